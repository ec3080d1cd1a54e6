from collections.abc import Callable

from django.contrib.auth import views as auth_views
from django.http import HttpResponseBase
from django.urls import include, path
from django.views.i18n import JavaScriptCatalog

from api.urls import token_patterns
from webkvm import languages, users, views
from webkvm.operations import LOGIN, PUBLIC, Access, page, route


def _declared(access: Access, view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Django's own views (login, logout), with their declared access like every other route."""
    return route(access)(view)


users_patterns = (
    [
        path("", users.user_list, name="list"),
        path("new/", users.user_create, name="create"),
        path("<int:pk>/", users.user_detail, name="detail"),
        path("<int:pk>/grants/<int:grant_id>/delete/", users.grant_delete, name="grant_delete"),
    ],
    "users",
)

urlpatterns = [
    path("", views.home, name="home"),
    path("login/", _declared(page(PUBLIC), auth_views.LoginView.as_view(redirect_authenticated_user=True)),
         name="login"),
    path("logout/", _declared(page(LOGIN), auth_views.LogoutView.as_view()), name="logout"),
    path("language/", languages.choose, name="language"),
    # The front-end's strings in the page's language (gettext() in static/js), from the djangojs catalogs.
    path("jsi18n/", _declared(page(PUBLIC), JavaScriptCatalog.as_view()), name="javascript-catalog"),
    path("hosts/", include("hosts.urls")),
    path("instances/", include("instances.urls")),
    path("storage/", include("storage.urls")),
    path("networks/", include("networks.urls")),
    path("console/", include("console.urls")),
    path("jobs/", include("jobs.urls")),
    path("users/", include(users_patterns)),
    path("audit/", views.audit_log, name="audit"),
    path("api/v1/", include("api.urls")),
    path("tokens/", include(token_patterns)),
]
