"""A key that is also an attribute of REST framework's fields and serializers (source, label, fields, parent) is
declared with a trailing underscore so the type checker accepts it (api/base.py Serializer); the schema and
what a serializer writes still name it as the answers do."""

from __future__ import annotations

import pytest
import yaml
from django.test import Client

from api.base import Serializer
from api.storage import Problem
from api.vm_life import PlannedVolume

pytestmark = pytest.mark.django_db

CLASHING = {"DiskOut": "source", "NicOut": "source", "PlannedVolume": "source", "PoolOut": "source",
            "InterfacesOut": "source", "BootDeviceOut": "label", "ShareOut": "label", "JobOut": "label",
            "SnapshotOut": "parent", "Problem": "fields", "KeysToConfirm": "fields"}


def test_the_schema_names_clashing_keys_without_the_underscore() -> None:
    response = Client().get("/api/v1/schema/")
    assert response.status_code == 200
    components = yaml.safe_load(response.content)["components"]["schemas"]
    for component, key in CLASHING.items():
        assert key in components[component]["properties"], f"{component} lost its key {key!r}"
    underscored = [(name, key) for name, component in components.items()
                   for key in component.get("properties", {}) if key.endswith("_")]
    assert underscored == []
    # The base class's explanation is a comment: a docstring would describe every component.
    assert all("trailing underscore" not in component.get("description", "") for component in components.values())


def test_a_serializer_reads_and_writes_the_key_itself() -> None:
    volume = {"target": "vda", "device": "disk", "source": "default/a.qcow2", "key": "k", "deletable": True}
    assert PlannedVolume(volume).data["source"] == "default/a.qcow2"
    assert set(Problem().fields) == {"code", "message", "fields"}
    assert issubclass(PlannedVolume, Serializer)
