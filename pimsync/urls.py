from django.contrib import admin
from django.http import HttpResponseRedirect
from django.templatetags.static import static
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from pimsync import operations
from pimsync.adobe.webhook import aem_webhook
from pimsync.pim.akeneo_webhook import akeneo_webhook
from pimsync.pim.webhook import pim_webhook

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    re_path(r"^webhooks/aem/?$", aem_webhook, name="aem-webhook"),
    re_path(r"^webhooks/akeneo/?$", akeneo_webhook, name="akeneo-webhook"),
    re_path(r"^webhooks/pim/?$", pim_webhook, name="pim-webhook"),
    # Browsers ask for /favicon.ico whatever the page links; whitenoise serves the file itself
    # (its hashed name is looked up per request: the manifest exists only after collectstatic).
    path("favicon.ico", lambda request: HttpResponseRedirect(static("dashboard/favicon.svg"))),
    path("healthz", operations.healthz, name="healthz"),
    path("healthz/ready", operations.ready, name="healthz-ready"),
    path("metrics", operations.metrics, name="metrics"),
    # Answers only in sandbox mode (see pimsync.sandbox.views.sandbox_only).
    path("sandbox/", include("pimsync.sandbox.urls")),
    path("admin/", admin.site.urls),
]
