from django.apps import AppConfig


class InstancesConfig(AppConfig):
    name = "instances"

    def ready(self) -> None:
        from instances import clone_jobs  # noqa: F401  (declares the VM clone job kind, in job workers too)
