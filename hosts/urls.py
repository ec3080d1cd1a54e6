from django.urls import path

from hosts import shares, views

app_name = "hosts"
urlpatterns = [
    path("", views.host_list, name="list"),
    path("new/", views.host_create, name="create"),
    path("ssh-key/", views.panel_ssh_key, name="ssh_key"),
    path("<slug:name>/", views.host_detail, name="detail"),
    path("<slug:name>/edit/", views.host_edit, name="edit"),
    path("<slug:name>/delete/", views.host_delete, name="delete"),
    path("<slug:name>/test/", views.host_test, name="test"),
    path("<slug:name>/confirm-machine/", views.host_confirm_machine, name="confirm_machine"),
    path("<slug:name>/usage.json", views.host_usage, name="usage"),
    path("<slug:name>/shared/", shares.share, name="share"),
    path("<slug:name>/shared/<int:pk>/close/", shares.unshare, name="unshare"),
]
