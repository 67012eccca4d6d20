from django.contrib import admin
from django.urls import path, re_path
from django.views.generic import RedirectView

from pimsync import webhooks

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    re_path(r"^webhooks/aem/?$", webhooks.aem_webhook, name="aem-webhook"),
    path("admin/", admin.site.urls),
]
