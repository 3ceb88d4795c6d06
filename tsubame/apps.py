from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """Django's admin, served by our site (tsubame.adminsite)."""

    default_site = "tsubame.adminsite.AdminSite"

    def ready(self) -> None:
        super().ready()
        from django.contrib import admin
        from django_q.models import Schedule

        from tsubame.adminsite import name_relationship_rows

        name_relationship_rows()

        # django-q2's own schedules are not ours to use (jobs are not run by them): listed as
        # "Scheduled tasks" they would pose as job schedules and run any function named.
        admin.site.unregister(Schedule)
