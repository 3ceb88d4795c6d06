from django.apps import AppConfig
from django.db.models.signals import post_migrate


class AccountsConfig(AppConfig):
    name = "accounts"

    def ready(self) -> None:
        from accounts.roles import ensure_role_groups

        # After every app's permissions exist: ours is the last app in INSTALLED_APPS order
        # that matters, and the handler is idempotent anyway.
        post_migrate.connect(ensure_role_groups, dispatch_uid="tsubame-role-groups")
