"""Job progress pushed to open job pages: whoever changes a job (its worker, a Cancel, the reconciler)
announces it on the job's channel group; the pages' sockets (jobs/consumers.py) read the row and send it.
The announcement carries no data, so what a page shows always comes from the database and the one check."""

from __future__ import annotations

import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from jobs.models import Job
from webkvm.permissions import is_admin

log = logging.getLogger(__name__)


def group(job_id: int) -> str:
    return f"jobs.{job_id}"


def announce(job_id: int) -> None:
    """Tell open pages of the job that it changed; never fails the job (pages poll when sockets cannot)."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(group(job_id), {"type": "job.changed"})
    except Exception:  # Redis away, or called where no loop may run: the page's fallback polling still works
        log.debug("could not announce job %s", job_id, exc_info=True)


def may_see(user: Any, job: Job) -> bool:
    """Admins see every job; anybody else the jobs they started."""
    if user is None or not user.is_authenticated or not user.is_active:
        return False
    return is_admin(user) or (job.owner_id is not None and job.owner_id == user.pk)
