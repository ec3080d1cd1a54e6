from django.apps import AppConfig


class WebkvmConfig(AppConfig):
    name = "webkvm"
    verbose_name = "webkvm"

    def ready(self) -> None:
        from webkvm import signals  # noqa: F401  (connects the audit receivers)
