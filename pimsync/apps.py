from django.apps import AppConfig


class PimsyncConfig(AppConfig):
    name = "pimsync"
    verbose_name = "pimsync"

    def ready(self) -> None:
        from pimsync import checks  # noqa: F401  (registers the system checks)
