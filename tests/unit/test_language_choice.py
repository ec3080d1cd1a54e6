"""The language of each page and answer: the browser's (Accept-Language) on the login page, then the user's own choice
from their menu, stored with the user (webkvm.models.UserLanguage): it survives logout and log-in, never reaches
another user of the same browser, and speaks to the user's API tokens too. Dates and numbers follow the language,
and the audit page names every action in words."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import formats, translation

from api.models import ApiToken
from tests.conftest import PASSWORD
from webkvm import audit
from webkvm.models import AuditEvent, UserLanguage

pytestmark = pytest.mark.django_db

CHINESE = '<html lang="zh-Hans"'
ENGLISH = '<html lang="en"'


@pytest.fixture(autouse=True)
def _english_afterwards() -> Any:
    """A request leaves its language active in the thread (the test's): the next test starts in English."""
    yield
    translation.activate("en")


@pytest.fixture
def people() -> dict[str, Any]:
    users = get_user_model().objects
    return {"alice": users.create_user("alice", "", PASSWORD), "bob": users.create_user("bob", "", PASSWORD)}


def log_in(client: Client, name: str) -> None:
    answer = client.post(reverse("login"), {"username": name, "password": PASSWORD})
    assert answer.status_code == 302, answer.content.decode()[:500]


def log_out(client: Client) -> None:
    assert client.post(reverse("logout")).status_code == 302


def choose(client: Client, code: str, back: str = "/") -> Any:
    return client.post(reverse("language"), {"language": code, "next": back})


def page_of(client: Client, url: str = "/", **headers: str) -> str:
    answer = client.get(url, **headers)
    assert answer.status_code == 200, answer.status_code
    return answer.content.decode()


# --- the browser's language, before log-in -----------------------------------------------------------------

def test_the_login_page_follows_the_browsers_language() -> None:
    chinese = Client(HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9,en;q=0.5")
    answer = chinese.get(reverse("login"))
    page = answer.content.decode()
    assert CHINESE in page and "登录" in page and "用户名" in page and "User name" not in page
    assert answer["Content-Language"] == "zh-hans"
    english = Client(HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.8")
    page = page_of(english, reverse("login"))
    assert ENGLISH in page and "User name" in page and "用户名" not in page
    assert ENGLISH in page_of(Client(), reverse("login")), "no Accept-Language: English"


def test_a_locked_out_log_in_is_told_in_the_browsers_language(settings, people) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    browser = Client(HTTP_ACCEPT_LANGUAGE="zh-CN")
    for _ in range(3):
        answer = browser.post(reverse("login"), {"username": "alice", "password": "wrong"})
    assert answer.status_code == 429
    assert "登录失败次数过多" in answer.content.decode()


# --- the user's choice --------------------------------------------------------------------------------------

def test_a_choice_is_stored_and_survives_logout_and_login(people) -> None:
    browser = Client()
    log_in(browser, "alice")
    assert ENGLISH in page_of(browser, reverse("api-tokens:list"))
    answer = choose(browser, "zh-hans", reverse("api-tokens:list"))
    assert answer.status_code == 302 and answer["Location"] == reverse("api-tokens:list")
    assert UserLanguage.objects.get(user=people["alice"]).language == "zh-hans"
    page = page_of(browser, reverse("api-tokens:list"))
    assert CHINESE in page and "API 令牌" in page
    log_out(browser)
    assert ENGLISH in page_of(browser, reverse("login")), "the log-in page is the browser's again"
    log_in(browser, "alice")
    assert CHINESE in page_of(browser, reverse("api-tokens:list"))
    elsewhere = Client(HTTP_ACCEPT_LANGUAGE="en")  # another browser that asks for English: the choice follows her
    log_in(elsewhere, "alice")
    assert CHINESE in page_of(elsewhere, reverse("api-tokens:list"))
    choose(elsewhere, "en")
    assert ENGLISH in page_of(elsewhere, reverse("api-tokens:list"))
    assert UserLanguage.objects.get(user=people["alice"]).language == "en"


def test_a_choice_never_reaches_the_next_user_of_the_same_browser(people) -> None:
    browser = Client()
    log_in(browser, "alice")
    choose(browser, "zh-hans")
    log_out(browser)
    log_in(browser, "bob")
    page = page_of(browser, reverse("api-tokens:list"))
    assert ENGLISH in page and "API tokens" in page and "令牌" not in page
    assert not UserLanguage.objects.filter(user=people["bob"]).exists()
    assert "webkvm_language" not in browser.cookies or not browser.cookies["webkvm_language"].value
    log_out(browser)
    log_in(browser, "alice")
    assert CHINESE in page_of(browser, reverse("api-tokens:list")), "hers again"


def test_a_stored_choice_wins_over_the_browsers_language(people) -> None:
    UserLanguage.objects.create(user=people["bob"], language="en")
    browser = Client(HTTP_ACCEPT_LANGUAGE="zh-CN,zh;q=0.9")
    assert CHINESE in page_of(browser, reverse("login"))
    log_in(browser, "bob")
    assert ENGLISH in page_of(browser, reverse("api-tokens:list"))


@pytest.mark.parametrize("code", ["", "xx", "de", "zh", "ZH-HANS", "zh-hans\n", "en; DROP"])
def test_a_bad_language_code_changes_nothing(people, code: str) -> None:
    browser = Client()
    log_in(browser, "alice")
    choose(browser, "zh-hans")
    answer = choose(browser, code)
    assert answer.status_code == 302
    assert UserLanguage.objects.get(user=people["alice"]).language == "zh-hans"
    assert CHINESE in page_of(browser, reverse("api-tokens:list"))
    assert UserLanguage.objects.count() == 1


def test_the_way_back_stays_on_the_panel(people) -> None:
    browser = Client()
    log_in(browser, "alice")
    answer = choose(browser, "zh-hans", "https://elsewhere.example/phish")
    assert answer.status_code == 302 and answer["Location"] == reverse("home")


def test_the_choice_is_csrf_protected_and_stored_only_for_a_logged_in_user(people) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(people["alice"])
    assert choose(strict, "zh-hans").status_code == 403, "no CSRF token: refused"
    assert not UserLanguage.objects.exists()
    anonymous = Client()
    assert ENGLISH in page_of(anonymous, reverse("login"))
    answer = choose(anonymous, "zh-hans", back=reverse("login"))  # the log-in page's switch: this browser's
    assert answer.status_code == 302 and answer["Location"] == reverse("login")
    assert not UserLanguage.objects.exists()
    assert CHINESE in page_of(anonymous, reverse("login"))
    strict.get(reverse("api-tokens:list"))  # the page sets the CSRF cookie; the menu's form carries the token
    token = strict.cookies["csrftoken"].value
    answer = strict.post(reverse("language"), {"language": "zh-hans", "next": "/"}, HTTP_X_CSRFTOKEN=token)
    assert answer.status_code == 302 and UserLanguage.objects.get(user=people["alice"]).language == "zh-hans"
    logged_in = Client()
    logged_in.force_login(people["alice"])
    assert logged_in.get(reverse("language")).status_code == 405, "POST only"


def test_error_pages_speak_the_users_language(people) -> None:
    UserLanguage.objects.create(user=people["alice"], language="zh-hans")
    browser = Client()
    log_in(browser, "alice")
    missing = browser.get("/no-such-page/")
    page = missing.content.decode()
    assert missing.status_code == 404 and CHINESE in page and "此地址没有任何内容。" in page
    refused = browser.get(reverse("audit"))
    assert refused.status_code == 403 and "你无权执行此操作。" in refused.content.decode()


def test_the_user_menu_offers_both_languages(people) -> None:
    browser = Client()
    log_in(browser, "alice")
    page = page_of(browser, reverse("api-tokens:list"))
    assert 'name="language" value="en"' in page and 'name="language" value="zh-hans"' in page
    assert "简体中文" in page and 'aria-current="true">English' in page


# --- the API: a token's user in their language ----------------------------------------------------------------

def test_the_api_answers_a_token_user_in_their_stored_language(people) -> None:
    alice = people["alice"]
    UserLanguage.objects.create(user=alice, language="zh-hans")
    _, text = ApiToken.make(alice, "reader", read_only=True)
    api = Client(enforce_csrf_checks=True)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {text}"}

    refused = api.post("/api/v1/flavors/", {}, content_type="application/json", **bearer)
    assert refused.status_code == 403
    assert refused.json() == {"code": "read_only_token", "message": "此令牌为只读令牌：只能读取。"}  # noqa: RUF001
    assert refused["Content-Language"] == "zh-hans"

    asked = api.post("/api/v1/flavors/", {}, content_type="application/json", HTTP_ACCEPT_LANGUAGE="en", **bearer)
    assert asked.json() == {"code": "read_only_token", "message": "This token is read-only: it may only read."}

    UserLanguage.objects.filter(user=alice).update(language="en")
    english = api.post("/api/v1/flavors/", {}, content_type="application/json", **bearer)
    assert english.json()["message"] == "This token is read-only: it may only read."


def test_api_errors_keep_their_codes_in_every_language(people) -> None:
    admin = get_user_model().objects.create_superuser("root-zh", "", PASSWORD)
    UserLanguage.objects.create(user=admin, language="zh-hans")
    _, text = ApiToken.make(admin, "writer")
    api = Client(enforce_csrf_checks=True)
    bearer = {"HTTP_AUTHORIZATION": f"Bearer {text}"}
    invalid = api.post("/api/v1/flavors/", {}, content_type="application/json", **bearer)
    body = invalid.json()
    assert invalid.status_code == 400 and body["code"] == "invalid" and body["message"] == "部分字段无效。"
    assert set(body["fields"]) >= {"name"}
    missing = api.get("/api/v1/flavors/999999/", **bearer)
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    bad = Client().get("/api/v1/flavors/", HTTP_AUTHORIZATION="Bearer wkvm_nope_nope", HTTP_ACCEPT_LANGUAGE="zh-CN")
    assert bad.status_code == 401 and bad.json() == {"code": "bad_token", "message": "此令牌无效。"}


# --- dates, numbers and the audit page follow the language -------------------------------------------------------

def test_dates_read_the_same_way_and_numbers_follow_the_language() -> None:
    instant = datetime.datetime(2026, 12, 2, 13, 51, 7, tzinfo=datetime.UTC)
    shown = {}
    for code in ("en", "zh-hans"):
        with translation.override(code):
            shown[code] = (formats.date_format(instant, "DATETIME_FORMAT"), formats.date_format(instant),
                           formats.date_format(instant, "SHORT_DATETIME_FORMAT"), formats.localize(instant))
            assert formats.get_format("DECIMAL_SEPARATOR") == "."
    assert shown["en"] == shown["zh-hans"]
    assert shown["zh-hans"][0] == "2026-12-02 13:51:07 UTC" and shown["zh-hans"][1] == "2026-12-02"
    with translation.override("zh-hans"):
        assert formats.get_format("NUMBER_GROUPING") == 4  # Django's own zh_Hans number formats
        assert formats.number_format(1234567.5, 1) == "1234567.5"


def test_every_audited_action_has_words() -> None:
    import webkvm.urls  # noqa: F401  every app's operations are declared by the time the routes are
    from jobs.runner import KINDS
    from webkvm.operations import OPERATIONS

    unnamed = sorted((set(OPERATIONS) | set(KINDS)) - set(audit.ACTIONS))
    assert unnamed == [], "give these actions words in webkvm.audit.ACTIONS"
    with translation.override("zh-hans"):
        assert audit.action_words("vm.start") == "启动虚拟机"
        assert audit.action_words("denied:power") == "已拒绝（缺少电源权限）"  # noqa: RUF001
        assert audit.action_words("denied:admin") == "已拒绝（缺少管理员权限）"  # noqa: RUF001
        assert audit.action_words("something.new") == "something.new", "an unknown code as it is"
        assert audit.result_words("ok") == "成功" and audit.object_type_words("pool") == "存储池"


def test_the_audit_page_shows_actions_in_words_and_keeps_the_codes(admin_user) -> None:
    AuditEvent.objects.create(username="alice", action="vm.start", object_type="vm", object_name="web-01",
                              result="failed")
    UserLanguage.objects.create(user=admin_user, language="zh-hans")
    browser = Client()
    browser.force_login(admin_user)
    page = page_of(browser, reverse("audit") + "?action=vm.")
    assert "启动虚拟机" in page and "失败" in page and 'data-action="vm.start"' in page
    assert '<option value="failed">失败</option>' in page
    assert AuditEvent.objects.filter(action="vm.start", result="failed").exists(), "the stored codes stay"


def test_the_login_pages_choice_is_the_browsers_until_a_user_chose_their_own(people) -> None:
    browser = Client()
    page = page_of(browser, reverse("login"))
    assert 'id="login-language"' in page and 'value="zh-hans"' in page
    choose(browser, "zh-hans", back=reverse("login"))
    log_in(browser, "alice")  # alice never chose: the browser's language
    assert CHINESE in page_of(browser)
    log_out(browser)
    choose(browser, "en", back=reverse("login"))
    log_in(browser, "alice")
    choose(browser, "zh-hans")  # her own choice, stored; this browser's cookie stays English
    assert UserLanguage.objects.get(user=people["alice"]).language == "zh-hans"
    log_out(browser)
    assert ENGLISH in page_of(browser, reverse("login"))
    log_in(browser, "bob")
    assert ENGLISH in page_of(browser), "alice's choice does not reach bob in the same browser"
