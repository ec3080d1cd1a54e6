"""Every URL route of the panel, walked: each must carry a declared access (webkvm/operations.py), and
the permission table is generated from those declarations and run with the personas: admin, a user
with each single grant on web-01, an outsider and an anonymous visitor.

A new route is covered by declaring its operation or page; a route nobody declared fails here."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from api.models import ApiToken
from hosts import services
from hosts.models import Host
from instances.models import Flavor
from jobs.models import Job
from tests.conftest import DB_01_UUID, PASSWORD, WEB_01_UUID
from webkvm.models import AuditEvent, VMGrant, VMPermission
from webkvm.operations import ADMIN, LOGIN, OWNER, PUBLIC, Access, access_of

pytestmark = pytest.mark.django_db

GRANTS = [p.value for p in VMPermission]
JOB_ID = 4242
JOB_OWNER = "user-view"  # the persona who started the sample job (OWNER routes)


@dataclass(frozen=True)
class Route:
    name: str  # namespace:name
    pattern: str
    callback: Callable[..., Any]
    arguments: tuple[tuple[str, str], ...]  # (name, converter)

    @property
    def access(self) -> Access | None:
        return access_of(self.callback)


def _walk(patterns: list[Any], prefix: str = "", namespace: str = "",
          converters: tuple[tuple[str, str], ...] = ()) -> Iterator[Route]:
    for entry in patterns:
        found = tuple((name, type(conv).__name__) for name, conv in entry.pattern.converters.items())
        if isinstance(entry, URLResolver):
            inner = ":".join(part for part in (namespace, entry.namespace or "") if part)
            yield from _walk(entry.url_patterns, prefix + str(entry.pattern), inner, converters + found)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}:{entry.name}" if namespace else str(entry.name)
            yield Route(name, prefix + str(entry.pattern), entry.callback, converters + found)


ROUTES = sorted(_walk(get_resolver().url_patterns), key=lambda r: r.name)


def test_every_route_declares_its_access() -> None:
    undeclared = [f"{r.name} ({r.pattern})" for r in ROUTES if r.access is None]
    assert not undeclared, f"routes without a declared permission (webkvm/operations.py): {undeclared}"


# --- the generated table ----------------------------------------------------------------------------

def _sample(route: Route, argument: str, value: str | None) -> str:
    """A value for each URL argument, naming objects of the test world (tests/worlds/basic.xml)."""
    if value is not None:
        return value
    app = route.name.split(":")[0]
    samples = {"host": "testhost", "vm": WEB_01_UUID, "pool": "images", "volume": "disk.img", "kind": "dir",
               "action": "start", "job": str(JOB_ID), "job_id": str(JOB_ID), "pk": "1", "grant_id": "1"}
    if argument == "name":
        return "testhost" if app == "hosts" else "lan"
    return samples.get(argument, "x")


def _by(route: Route, method: str | None) -> str:
    access = route.access
    if access is not None and method:
        access = access.of_method(method)
    return access.by if access is not None else ""


def _url(route: Route, chosen: str | None, vm: str = WEB_01_UUID, method: str | None = None) -> str:
    url = "/" + route.pattern
    for argument, converter in route.arguments:
        value = _sample(route, argument, chosen if argument == _by(route, method) else None)
        if argument == "vm":
            value = vm
        url = url.replace(f"<{converter_prefix(converter)}:{argument}>", value)
    return url


def converter_prefix(converter: str) -> str:
    return {"StringConverter": "str", "SlugConverter": "slug", "UUIDConverter": "uuid", "IntConverter": "int",
            "PathConverter": "path"}[converter]


def _cases() -> Iterator[tuple[Route, str | None, Access, str | None]]:
    """(route, the value of its `by` argument, the access, the HTTP method of an API route declaring methods)."""
    for route in ROUTES:
        declared = route.access
        if declared is None:
            continue
        for method in sorted(declared.methods) or [None]:
            access = declared.of_method(method) if method else declared
            assert access is not None
            if access.by:
                for value, op in sorted(access.choices.items()):
                    yield route, value, op.access, method
            else:
                yield route, None, access, method


CASES = list(_cases())
CASE_IDS = [f"{r.name}{' ' + m if m else ''}{' ' + c if c else ''}" for r, c, _, m in CASES]


def _allowed(access: Access, persona: str) -> bool:
    if access.permission == PUBLIC:
        return True
    if persona == "anonymous":
        return False
    if access.target == "host" and persona == "outsider":
        return False  # a page of a host's VMs needs a grant on one of them
    if persona == "admin" or access.permission == LOGIN:
        return True
    if access.permission == OWNER:
        return persona == JOB_OWNER
    if access.permission == ADMIN or persona == "outsider":
        return False
    grant = persona.removeprefix("user-")
    return access.permission in (VMPermission.VIEW, grant)


@pytest.fixture
def crowd(test_host: Host) -> dict[str, Client]:
    """Logged-in clients: admin, one user per single grant on web-01 (view is implied by every grant),
    an outsider; and an anonymous client."""
    users = get_user_model().objects
    clients = {"anonymous": Client()}
    people = {"admin": users.create_superuser("table-admin", "", PASSWORD),
              "outsider": users.create_user("table-outsider", "", PASSWORD)}
    for grant in GRANTS:
        user = users.create_user(f"table-{grant}", "", PASSWORD)
        VMGrant.objects.create(user=user, host=test_host, vm_uuid=WEB_01_UUID, vm_name="web-01",
                               **({f"can_{grant}": True} if grant != VMPermission.VIEW else {}))
        people[f"user-{grant}"] = user
    Job.objects.create(pk=JOB_ID, kind="volume.wipe", host=test_host, owner=people[JOB_OWNER], state="done",
                       target_type="volume", target_name="images/w.img", summary="a job of the view persona",
                       params={"pool": "images", "name": "w.img"})
    # The sample token of the OWNER route api-tokens:revoke (pk 1), the view persona's.
    ApiToken.objects.create(pk=1, user=people[JOB_OWNER], name="the view persona's token", prefix="table001",
                            secret_hash="0" * 64)
    for persona, user in people.items():
        client = Client()
        client.force_login(user)
        clients[persona] = client
    return clients


def _ask(client: Client, url: str, method: str | None = None) -> Any:
    """GET, or an empty POST (or PUT: the streamed upload) on a route that takes only those: enough to pass
    or fail the check. An API route declaring its methods is asked with the method of the case."""
    if method:
        return client.generic(method, url, b"{}" if method != "GET" else b"", content_type="application/json")
    response = client.get(url)
    if response.status_code == 405:
        response = client.post(url, {})
    if response.status_code == 405:
        response = client.put(url, b"", content_type="application/octet-stream")
    return response


def _refused(response: Any) -> bool:
    if response.status_code == 403:
        return True
    if response.status_code == 401:  # the API (api/): an anonymous caller is asked for a token, in JSON
        return True
    # LoginRequiredMiddleware's redirect says where to come back to (logout's own redirect does not).
    return response.status_code == 302 and response["Location"].startswith("/login/?next=")


def _hidden(url: str, response: Any) -> bool:
    """The API's refusal of an object the caller may not see: the answer of one that does not exist (404)."""
    return url.startswith("/api/") and response.status_code == 404 and response.json()["code"] == "not_found"


def _world(host: Host) -> list[str]:
    """Everything a refused request could have changed: the host's VMs, pools, volumes and networks, and
    the panel's own records (hosts, users, grants, flavors, jobs)."""
    def read(conn: Any) -> list[str]:
        found = [str(d.XMLDesc(0)) + str(d.state()) for d in conn.listAllDomains(0)]
        for pool in conn.listAllStoragePools(0):
            found.append(str(pool.XMLDesc(0)) + str(pool.isActive()))
            if pool.isActive():
                found.extend(str(v.XMLDesc(0)) for v in pool.listAllVolumes(0))
        found.extend(str(n.XMLDesc(0)) + str(n.isActive()) for n in conn.listAllNetworks(0))
        return sorted(found)

    result: list[str] = services.call(host, read)
    panel = [repr(list(model.objects.order_by("pk").values())) for model in (Host, VMGrant, Flavor, Job)]
    users = repr(list(get_user_model().objects.order_by("pk").values("username", "is_superuser", "is_active")))
    return result + panel + [users]


@pytest.mark.parametrize(("route", "chosen", "access", "method"), CASES, ids=CASE_IDS)
def test_permission_table(crowd: dict[str, Client], test_host: Host, route: Route, chosen: str | None,
                          access: Access, method: str | None) -> None:
    url = _url(route, chosen, method=method)
    refused_personas = [p for p in crowd if not _allowed(access, p)]
    before = _world(test_host)
    for persona in refused_personas:
        response = _ask(crowd[persona], url, method)
        assert _refused(response) or _hidden(url, response), \
            f"{persona} was not refused {method or ''} {url}: {response.status_code}"
    assert _world(test_host) == before, "a refused request changed something"
    if any(p != "anonymous" for p in refused_personas):
        assert AuditEvent.objects.filter(result="denied").exists(), "refusals are audited"
    if access.target == "vm" and access.permission != ADMIN:
        # A grant on web-01 opens nothing on db-01.
        other = _url(route, chosen, vm=DB_01_UUID, method=method)
        for persona in crowd:
            if persona.startswith("user-"):
                response = _ask(crowd[persona], other, method)
                assert _refused(response) or _hidden(other, response), f"{persona} reached db-01 at {other}"
    for persona in crowd:
        if persona in refused_personas:
            continue
        response = _ask(crowd[persona], url, method)
        assert not _refused(response), f"{persona} was refused {method or ''} {url}: {response.status_code}"
        assert response.status_code < 500, f"{persona} got {response.status_code} at {url}"


def _names_a_host(route: Route) -> bool:
    return any(arg == "host" or (arg == "name" and route.name.startswith("hosts:")) for arg, _ in route.arguments)


HOST_CASES = [(case, name) for case, name in zip(CASES, CASE_IDS, strict=True) if _names_a_host(case[0])]


@pytest.mark.parametrize(("route", "chosen", "access", "method"), [c for c, _ in HOST_CASES],
                         ids=[name for _, name in HOST_CASES])
def test_an_unknown_host_answers_non_admins_as_a_known_one_does(crowd: dict[str, Client], test_host: Host,
                                                                route: Route, chosen: str | None,
                                                                access: Access, method: str | None) -> None:
    """Users cannot tell host names apart: a host that does not exist is refused (403; the API: 404, as what they
    may not see) like one they may not use; admins hear 404."""
    unknown = _url(route, chosen, method=method).replace("/testhost/", "/no-such-host/")
    for persona, client in crowd.items():
        if persona == "anonymous":
            continue
        response = _ask(client, unknown, method)
        expected = 404 if persona == "admin" or unknown.startswith("/api/") else 403
        assert response.status_code == expected, f"{persona} got {response.status_code} at {unknown}"


def test_the_table_covers_each_kind_of_access() -> None:
    kinds = {access.permission for _, _, access, _ in CASES}
    assert {ADMIN, LOGIN, OWNER, PUBLIC} <= kinds
    assert set(GRANTS) <= kinds, "every VM grant guards some route"
