"""Take the secrets (VNC/SPICE passwords, disk cookies) out of every kept definition stored before the
panel stopped keeping them (DomainDefinition.save() keeps none since)."""

from django.db import migrations

from virt.xmledit import without_secrets


def strip_secrets(apps, schema_editor):  # type: ignore[no-untyped-def]
    DomainDefinition = apps.get_model("instances", "DomainDefinition")
    for entry in DomainDefinition.objects.only("xml").iterator():
        if entry.xml and (clean := without_secrets(entry.xml)) != entry.xml:
            DomainDefinition.objects.filter(pk=entry.pk).update(xml=clean)


class Migration(migrations.Migration):
    dependencies = [("instances", "0002_domain_definition")]
    operations = [migrations.RunPython(strip_secrets, migrations.RunPython.noop)]
