from django.urls import path

from pimsync.sandbox import views

urlpatterns = [
    path("ims/token/v3", views.ims_token, name="sandbox-ims-token"),
    path("keys/<path:path>", views.public_key, name="sandbox-public-key"),
    path("journal", views.journal, name="sandbox-journal"),
    path("aem/adobe/assets/<str:asset_id>/metadata", views.asset_metadata, name="sandbox-asset-metadata"),
]
