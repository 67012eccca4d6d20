from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView

from pimsync import akeneo_webhook, operations, pim_webhook, webhooks

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    re_path(r"^webhooks/aem/?$", webhooks.aem_webhook, name="aem-webhook"),
    re_path(r"^webhooks/akeneo/?$", akeneo_webhook.akeneo_webhook, name="akeneo-webhook"),
    re_path(r"^webhooks/pim/?$", pim_webhook.pim_webhook, name="pim-webhook"),
    path("healthz", operations.healthz, name="healthz"),
    path("healthz/ready", operations.ready, name="healthz-ready"),
    path("metrics", operations.metrics, name="metrics"),
    # Answers only in sandbox mode (see pimsync.sandbox.views.sandbox_only).
    path("sandbox/", include("pimsync.sandbox.urls")),
    path("admin/", admin.site.urls),
]
