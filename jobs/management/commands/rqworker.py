"""`manage.py rqworker [default]`: django-rq's job worker command, as `manage.py serve` starts it.

django_rq itself is not an installed app: its unmanaged Dashboard model, which has no table, makes
`manage.py dumpdata` fail (rq/django-rq#631), and the panel uses nothing else of the app."""

from django_rq.management.commands.rqworker import Command

__all__ = ["Command"]
