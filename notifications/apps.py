from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"

    def ready(self) -> None:
        # Registers the reaction that plans notifications before any event is processed.
        from notifications import planning  # noqa: F401
