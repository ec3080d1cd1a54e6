"""One Job model for every long operation: what it is, whose it is, where it stands, how it ended."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext, pgettext_lazy
from django.utils.translation import gettext_lazy as _

from jobs.words import shown


class JobState(models.TextChoices):
    QUEUED = "queued", pgettext_lazy("job state", "queued")
    RUNNING = "running", pgettext_lazy("job state", "running")
    DONE = "done", pgettext_lazy("job state", "done")
    FAILED = "failed", pgettext_lazy("job state", "failed")
    CANCELLED = "cancelled", pgettext_lazy("job state", "cancelled")
    INTERRUPTED = "interrupted", pgettext_lazy("job state", "interrupted")


ACTIVE = (JobState.QUEUED, JobState.RUNNING)

# What a job works on, in words (Job.target_type).
TARGET_TYPES = {"vm": _("vm"), "volume": _("volume"), "pool": _("pool"), "network": _("network"), "host": _("host")}


class Job(models.Model):
    """A long operation run by a job worker (RQ), or by a thread of the panel when it runs alone.

    Written by the worker as it goes (progress), once when it ends (state, result, audit record), and
    by the reconciliation when the worker running it is gone (interrupted)."""

    kind = models.CharField(max_length=64, db_index=True)  # also the audit action, e.g. volume.clone
    host = models.ForeignKey("hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    target_type = models.CharField(max_length=32)  # vm, volume, pool, network, host
    target_name = models.CharField(max_length=255)
    summary = models.CharField(max_length=255, blank=True)  # what it does, in words
    params = models.JSONField(default=dict, blank=True)  # what the work function needs
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="jobs")
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    state = models.CharField(max_length=12, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    done = models.BigIntegerField(default=0)
    total = models.BigIntegerField(default=0)  # 0: progress cannot be measured
    phase = models.CharField(max_length=255, blank=True)
    result = models.TextField(blank=True)
    # What anybody but an admin reads instead of `result` when that holds the host's own words (libvirt's,
    # ssh's): only admins and the audit record get those (webkvm.operations.told).
    result_for_users = models.TextField(blank=True)
    # The same (summary, phase, result, result_for_users) as messages of ours (jobs/words.py): each reader sees
    # them in their language; the text fields above keep the English (the audit record, the logs).
    words = models.JSONField(default=dict, blank=True)
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    rq_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(max_length=255, blank=True)
    audit = models.ForeignKey("webkvm.AuditEvent", null=True, blank=True, on_delete=models.SET_NULL,
                              related_name="+")
    # The job this one is a step of (a host evacuation's migrations); the parent runs its children itself.
    parent = models.ForeignKey("self", null=True, blank=True, related_name="children", on_delete=models.SET_NULL)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"job {self.pk} {self.kind} {self.target_name}: {self.state}"

    def get_absolute_url(self) -> str:
        return reverse("jobs:detail", args=[self.pk])

    def result_for(self, user: Any) -> str:
        from webkvm.permissions import is_admin

        return self.result if is_admin(user) or not self.result_for_users else self.result_for_users

    def _said(self, field: str) -> str:
        return shown((self.words or {}).get(field), getattr(self, field))

    @property
    def state_label(self) -> str:
        """The state in the reader's language."""
        return str(self.get_state_display())

    @property
    def target_label(self) -> str:
        """The kind of its target in the reader's language ("volume")."""
        return str(TARGET_TYPES.get(self.target_type, self.target_type))

    @property
    def kind_label(self) -> str:
        """The kind's name in the reader's language ("Clone volume")."""
        from jobs.runner import kind_of  # the runner imports this module

        kind = kind_of(self)
        return gettext(kind.label) if kind is not None else self.kind

    @property
    def shown_summary(self) -> str:
        """What it does, in the reader's language; a job written before its words were kept shows its English
        to English readers and its kind's name to the others."""
        if (self.words or {}).get("summary") is not None:
            return self._said("summary")
        english = (translation.get_language() or "en").split("-")[0] == "en"
        return self.summary if english and self.summary else self.kind_label

    @property
    def shown_phase(self) -> str:
        return self._said("phase")

    def shown_result_for(self, user: Any) -> str:
        """result_for(user) in the reader's language."""
        from webkvm.permissions import is_admin

        if is_admin(user) or not self.result_for_users:
            return self._said("result")
        return self._said("result_for_users")

    @property
    def active(self) -> bool:
        return self.state in ACTIVE

    @property
    def seconds(self) -> float | None:
        """How long it ran (so far), None before it started."""
        if self.started is None:
            return None
        return round(((self.finished or timezone.now()) - self.started).total_seconds(), 1)

    @property
    def percent(self) -> float | None:
        if self.state == JobState.DONE:
            return 100.0
        if self.total and self.state in ACTIVE:
            return min(99.0, round(100.0 * self.done / self.total, 1))  # 100 only once the work says so
        return None
