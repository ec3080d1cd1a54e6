from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"

    def ready(self) -> None:
        # Declare the VM job kinds (clone, creation, a running VM's snapshot, migration), in job workers too.
        from instances import clone_jobs, create_jobs, image_jobs, migrate_jobs, snapshot_jobs  # noqa: F401
