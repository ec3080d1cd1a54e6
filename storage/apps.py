from django.apps import AppConfig


class StorageConfig(AppConfig):
    name = "storage"

    def ready(self) -> None:
        from storage import volume_jobs  # noqa: F401  (declares the storage job kinds, in job workers too)
