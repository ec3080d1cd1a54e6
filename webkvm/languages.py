"""The language of each page: the browser's (Accept-Language, or the choice made on the log-in page, kept in a
cookie of that browser; Django's LocaleMiddleware) until a user picks one in their menu; then theirs, stored
with the user and copied into the session at log-in, so it survives logout and log-in and never reaches another
user's pages (a user's own choice never goes into the cookie)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.http.cookie import parse_cookie
from django.urls import reverse
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from webkvm.models import UserLanguage
from webkvm.operations import PUBLIC, page, route

SESSION_KEY = "webkvm_language"
CODES = {code for code, _ in settings.LANGUAGES}
# <html lang> and Content-Language take BCP 47 tags: Django's code "zh-hans" is written "zh-Hans".
HTML_TAGS = {"zh-hans": "zh-Hans"}


def stored(user: Any) -> str:
    """The language `user` chose, or "" when they never chose one."""
    choice = UserLanguage.objects.filter(user_id=user.pk).values_list("language", flat=True).first()
    return choice if choice in CODES else ""


def of_user(user: Any, fallback: str = settings.LANGUAGE_CODE) -> str:
    """The language to speak to `user` where no request says it (a WebSocket frame, an e-mail)."""
    return stored(user) or fallback


def of_caller(user: Any, cookie: str, accept_language: str) -> str:
    """The language for a caller no Django middleware has seen (a WebSocket, the ASGI wrapper before Django): the
    user's own choice, else their browser's (the log-in page's cookie, Accept-Language), as a page would speak.
    Blocking: it reads the database when there is a user."""
    chosen = stored(user) if user is not None and getattr(user, "pk", None) is not None else ""
    if chosen:
        return chosen
    request = HttpRequest()
    request.COOKIES = parse_cookie(cookie)
    request.META["HTTP_ACCEPT_LANGUAGE"] = accept_language[:500]
    return translation.get_language_from_request(request)


def html_tag(code: str | None = None) -> str:
    code = code or translation.get_language() or settings.LANGUAGE_CODE
    return HTML_TAGS.get(code, code)


def activate_for(request: HttpRequest, user: Any) -> None:
    """Speak `user`'s chosen language for the rest of this request (also for the API's token users, who are
    known only once the API view authenticated them)."""
    session = getattr(request, "session", None)
    code = session.get(SESSION_KEY) if session is not None else None
    if code is None:
        code = stored(user)
        if session is not None:
            session[SESSION_KEY] = code
    if code in CODES:
        translation.activate(code)
        request.LANGUAGE_CODE = code


class UserLanguageMiddleware:
    """After authentication: a logged-in user's chosen language replaces the browser's."""

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            activate_for(request, user)
        response: HttpResponseBase = self.get_response(request)
        return response


@receiver(user_logged_in)
def _copy_choice_into_session(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    if request is not None and hasattr(request, "session"):
        request.session[SESSION_KEY] = stored(user)


def context(request: HttpRequest) -> dict[str, Any]:
    """For every template: the <html lang> tag and the choices of the user menu."""
    current = translation.get_language() or settings.LANGUAGE_CODE
    return {"html_lang": html_tag(current),
            "language_choices": [{"code": code, "name": name, "current": code == current}
                                 for code, name in settings.LANGUAGES]}


@route(page(PUBLIC))
@require_POST
def choose(request: HttpRequest) -> HttpResponse:
    """A language choice: from a user's menu, stored with the user; from the log-in page (nobody logged in yet),
    the browser's, kept in its language cookie. In force from the next page on."""
    code = request.POST.get("language", "")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()},
                                           require_https=request.is_secure()):
        back = reverse("home")
    response = HttpResponseRedirect(back)
    if code not in CODES:
        return response
    if request.user.is_authenticated:
        UserLanguage.objects.update_or_create(user=request.user, defaults={"language": code})
        request.session[SESSION_KEY] = code
    else:
        response.set_cookie(settings.LANGUAGE_COOKIE_NAME, code, max_age=365 * 86400, samesite="Lax", httponly=True,
                            secure=request.is_secure())
    translation.activate(code)
    return response
