from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    name = "executions"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from executions import search

        connection_created.connect(search.register_functions)
        # Modules whose @reaction functions must be registered before any event is processed.
        from executions import retries  # noqa: F401
        from jobs import chains  # noqa: F401
