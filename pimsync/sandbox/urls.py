from django.urls import path, re_path

from pimsync.sandbox import views

urlpatterns = [
    path("ims/token/v3", views.ims_token, name="sandbox-ims-token"),
    path("keys/<path:path>", views.public_key, name="sandbox-public-key"),
    path("journal", views.journal, name="sandbox-journal"),
    # The author UI's asset page, where "Open in AEM ↗" leads (the asset's path is in the fragment).
    path("aem/ui", views.author_ui, name="sandbox-author-ui"),
    path("aem/adobe/assets/<str:asset_id>/metadata", views.asset_metadata, name="sandbox-asset-metadata"),
    path("aem/adobe/folders", views.folders, name="sandbox-folders"),
    # The author service's JSON rendering of a node, and the classic Assets HTTP API's folder
    # listings: what a backfill reads.
    re_path(r"^aem(?P<path>/content/dam/.+)\.json$", views.node_json, name="sandbox-node-json"),
    re_path(r"^aem/api/assets(?P<folder>/.+)?\.json$", views.folder_listing, name="sandbox-folder-listing"),
]
