"""Run the console proxy alone (websockify), for deployments that keep consoles in their own process.

`make run` does not need it: the panel's own ASGI app serves /console/ws/. Point the reverse
proxy's /console/ws/ location here instead (docs/reverse-proxy.md).
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from console.proxy import make_server


class Command(BaseCommand):
    help = "Serve console WebSockets (/console/ws/HOST/UUID/, the ticket a subprotocol) with websockify; no files."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--bind", default="127.0.0.1:6080", help="address:port to listen on")

    def handle(self, *args: Any, **options: Any) -> None:
        address, _, port = str(options["bind"]).rpartition(":")
        if not address or not port.isdigit() or not 0 < int(port) < 65536:
            raise CommandError("--bind must be ADDRESS:PORT, e.g. 127.0.0.1:6080")
        server = make_server(address.strip("[]"), int(port), settings.WEBKVM_CONSOLE_RECHECK_SECONDS)
        self.stdout.write(f"webkvm console proxy on ws://{options['bind']}/console/ws/")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
