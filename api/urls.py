"""/api/v1/: the REST API (api/views.py), its OpenAPI schema and reference page; the token pages."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase, JsonResponse
from django.urls import Resolver404, path, re_path, resolve
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from api import flavors, hosts, images, migration, networks, pages, people, quotas, storage, views, vm_config, vm_life
from api.base import declared
from webkvm.operations import ACCESS_ATTRIBUTE, PUBLIC, page


@csrf_exempt  # it changes nothing, and a POST to a mistyped address must get this JSON, not the CSRF page
def not_found(request: HttpRequest, rest: str = "") -> JsonResponse:
    """Any other address under /api/v1/, whatever the method: the API's own 404, in JSON like its other
    errors."""
    message = _("There is no API resource at %(path)s.") % {"path": request.path}
    if not request.path.endswith("/"):
        try:
            if resolve(request.path + "/").url_name != "not-found":
                message += " " + _("Did you mean %(path)s/ (API addresses end in a slash)?") % {"path": request.path}
        except Resolver404:
            pass
    return JsonResponse({"code": "not_found", "message": message}, status=404)


def _public(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """The schema and its reference page: readable without logging in (they describe, they hold no data)."""
    setattr(view, ACCESS_ATTRIBUTE, page(PUBLIC))
    view.login_required = False  # type: ignore[attr-defined]
    return view


app_name = "api"
urlpatterns = [
    path("hosts/", declared(views.HostList), name="hosts"),
    path("vms/", declared(views.VMList), name="vms"),
    path("vms/<str:host>/<uuid:vm>/", declared(views.VMDetail), name="vm"),
    path("vms/<str:host>/<uuid:vm>/actions/<str:action>/", declared(views.VMAction), name="vm-action"),
    path("jobs/", declared(views.JobList), name="jobs"),
    path("jobs/<int:job_id>/", declared(views.JobDetail), name="job"),
    # Each resource module lists its own routes.
    *vm_config.urlpatterns, *vm_life.urlpatterns, *migration.urlpatterns, *storage.urlpatterns,
    *networks.urlpatterns, *flavors.urlpatterns, *hosts.urlpatterns, *people.urlpatterns, *images.urlpatterns,
    *quotas.urlpatterns,
    path("schema/", _public(SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[])),
         name="schema"),
    # The split view serves Swagger UI's start-up script as a file of its own: the CSP allows no inline script.
    path("docs/", _public(SpectacularSwaggerSplitView.as_view(url_name="api:schema", authentication_classes=[],
                                                              permission_classes=[])), name="docs"),
    re_path(r"^(?P<rest>.*)$", _public(not_found), name="not-found"),  # last: what nothing above matched
]

token_patterns = (
    [
        path("", pages.token_list, name="list"),
        path("<int:pk>/revoke/", pages.token_revoke, name="revoke"),
    ],
    "api-tokens",
)
