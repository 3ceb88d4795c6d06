from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """Django's admin, served by our site (tsubame.adminsite)."""

    default_site = "tsubame.adminsite.AdminSite"
