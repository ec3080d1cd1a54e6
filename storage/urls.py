from django.urls import path

from storage.views import images, pools, transfer, volumes

app_name = "storage"
urlpatterns = [
    path("", pools.index, name="index"),
    # The image library: before "<slug:host>/", which would take "images" for a host's name.
    path("images/", images.image_list, name="images"),
    path("images/library/<slug:host>/<str:pool>/", images.library_edit, name="image_library"),
    path("images/import/<slug:host>/<str:pool>/", images.image_import, name="image_import"),
    path("images/<int:pk>/edit/", images.image_edit, name="image_edit"),
    path("images/<int:pk>/delete/", images.image_delete, name="image_delete"),
    path("<slug:host>/", pools.pools, name="pools"),
    path("<slug:host>/new/", pools.pool_types, name="pool_types"),
    path("<slug:host>/new/<slug:kind>/", pools.pool_new, name="pool_new"),
    # Pool and volume names come from libvirt: any characters but '/'.
    path("<slug:host>/pool/<str:pool>/", pools.pool_page, name="pool"),
    path("<slug:host>/pool/<str:pool>/action/<slug:action>/", pools.pool_action_view, name="pool_action"),
    path("<slug:host>/pool/<str:pool>/delete/", pools.pool_delete, name="pool_delete"),
    path("<slug:host>/pool/<str:pool>/volumes/new/", volumes.volume_new, name="volume_new"),
    path("<slug:host>/pool/<str:pool>/upload/check/", transfer.upload_check, name="upload_check"),
    path("<slug:host>/pool/<str:pool>/upload/", transfer.volume_upload, name="volume_upload"),  # PUT, streamed
    path("<slug:host>/pool/<str:pool>/volume/<str:volume>/clone/", volumes.volume_clone, name="volume_clone"),
    path("<slug:host>/pool/<str:pool>/volume/<str:volume>/resize/", volumes.volume_resize, name="volume_resize"),
    path("<slug:host>/pool/<str:pool>/volume/<str:volume>/wipe/", volumes.volume_wipe, name="volume_wipe"),
    path("<slug:host>/pool/<str:pool>/volume/<str:volume>/delete/", volumes.volume_delete, name="volume_delete"),
    path("<slug:host>/pool/<str:pool>/volume/<str:volume>/download/", transfer.volume_download,
         name="volume_download"),
]
