from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Dashboard"


class PimsyncAdminConfig(AdminConfig):
    """Django's admin, with pimsync's overview as its index page."""

    default_site = "dashboard.sites.PimsyncAdminSite"
