"""Django settings. Everything an operator may change comes from WEBKVM_* variables (see config.py)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import dj_database_url
import django_stubs_ext

from webkvm import config

django_stubs_ext.monkeypatch()  # lets forms.ModelForm[Host] be written at run time

BASE_DIR = Path(__file__).resolve().parent.parent
DATA_DIR = config.data_dir(BASE_DIR)

SECRET_KEY = config.secret_key(DATA_DIR)
DEBUG = config.env_bool("WEBKVM_DEBUG", False)
ALLOWED_HOSTS = config.env_list("WEBKVM_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = config.env_origins("WEBKVM_CSRF_TRUSTED_ORIGINS", [])
# Behind a TLS-terminating reverse proxy the operator sets WEBKVM_BEHIND_HTTPS_PROXY=true.
if config.env_bool("WEBKVM_BEHIND_HTTPS_PROXY", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "axes",  # login throttling (see AXES_* below)
    "webkvm",
    "hosts",
    "instances",
    "storage",
    "networks",
    "console",
    "jobs",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from the package, not a CDN
    "api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "webkvm.static_files.StaticFilesMiddleware",
    "webkvm.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # Accept-Language or the language cookie, before login
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "webkvm.languages.UserLanguageMiddleware",  # a logged-in user's own choice wins
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # answers a locked-out log-in with AXES_LOCKOUT_CALLABLE
]

ROOT_URLCONF = "webkvm.urls"
ASGI_APPLICATION = "webkvm.asgi.application"
# What several panel processes share: the channel layer (live updates), leases (one watcher per host)
# and per-VM locks live in Redis when WEBKVM_REDIS_URL is set (`make run` starts a private one);
# without it, in this process's memory, and the panel must run as one process.
WEBKVM_REDIS_URL = config.env_redis_url("WEBKVM_REDIS_URL")
CHANNEL_LAYERS = config.channel_layers(WEBKVM_REDIS_URL)
# Long operations (jobs/) run on RQ workers through Redis (`manage.py serve` starts WEBKVM_JOB_WORKERS of
# them, `manage.py rqworker` runs one more); without Redis, in threads of the one panel process.
RQ_QUEUES = {"default": {"URL": WEBKVM_REDIS_URL}}
WEBKVM_JOB_WORKERS = config.env_int("WEBKVM_JOB_WORKERS", 2, minimum=1, maximum=64)
# gunicorn workers `manage.py serve` starts; unset: one per CPU, at least 2 (webkvm/management/commands/serve.py).
WEBKVM_WORKERS = config.env_int("WEBKVM_WORKERS", 0, minimum=1, maximum=256) or None
WSGI_APPLICATION = "webkvm.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.i18n",
                "webkvm.languages.context",
            ],
            # Sizes and instants, the same in every template: iec, kib, when (webkvm/templatetags/formats.py).
            "builtins": ["webkvm.templatetags.formats"],
        },
    },
]

try:
    DATABASES = {
        "default": dj_database_url.parse(
            config.env_str("WEBKVM_DATABASE_URL", f"sqlite:///{DATA_DIR / 'webkvm.sqlite3'}"),
            conn_max_age=60,
        )
    }
except ValueError as exc:
    raise config.ConfigError(f"WEBKVM_DATABASE_URL is not a valid database URL: {exc}") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    if str(DATABASES["default"]["NAME"]).startswith("/"):  # not ":memory:"
        config.private_database(Path(DATABASES["default"]["NAME"]))
    # Several panel processes write to one SQLite file: WAL lets readers go on while one writes, IMMEDIATE
    # transactions take the write lock up front (no deadlock on upgrade), and a writer waits up to 20 s
    # for another instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE", "timeout": 20})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Login throttling (django-axes): after WEBKVM_LOGIN_FAILURES failed log-ins from one address, or for one user
# name, log-in is refused for WEBKVM_LOGIN_LOCKOUT_MINUTES (counted from the last failure). The counts live in
# a cache with that expiry, never in the database: in Redis, shared by every panel process, when the panel
# has one, else in the one process's memory. The address is REMOTE_ADDR (uvicorn sets it from
# X-Forwarded-For for a reverse proxy on loopback).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_CACHE = "axes"
AXES_FAILURE_LIMIT = config.env_int("WEBKVM_LOGIN_FAILURES", 5, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = timedelta(minutes=config.env_int("WEBKVM_LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=1440))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]  # each on its own: per address, and per user name
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "webkvm.views.login_locked_out"
AXES_VERBOSE = False
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "axes": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": WEBKVM_REDIS_URL,
             "KEY_PREFIX": "webkvm:axes"} if WEBKVM_REDIS_URL else
            {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "axes"},
    # The API's request counts (api/throttles.py), shared by every panel process through Redis.
    "api": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": WEBKVM_REDIS_URL,
            "KEY_PREFIX": "webkvm:api"} if WEBKVM_REDIS_URL else
           {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "api"},
}
# axes warns about a process-local cache; without Redis the panel runs as one process, where it is right.
SILENCED_SYSTEM_CHECKS = [] if WEBKVM_REDIS_URL else ["axes.W001"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = config.env_int("WEBKVM_SESSION_SECONDS", 8 * 3600, minimum=300, maximum=30 * 86400)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

# English and Simplified Chinese: from the browser's Accept-Language until a user picks one in their menu,
# which is stored with the user (webkvm/languages.py). The glossary of terms is docs/glossary-zh.md.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
# One catalog per part of the code (its own folder), the project's last: `manage.py makemessages` files a
# string under the first path whose parent folder holds it, so the project's catch-all comes last.
LOCALE_PATHS = [BASE_DIR / part / "locale" for part in
                ("api", "console", "hosts", "instances", "jobs", "networks", "storage", "virt")] + [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "webkvm_language"  # the log-in page's choice, of the browser (webkvm/languages.py)
TIME_ZONE = config.env_time_zone("WEBKVM_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True
# Every instant reads "2026-12-02 13:51:07 UTC" in TIME_ZONE (webkvm/formats): locale formats included.
FORMAT_MODULE_PATH = ["webkvm.formats"]
DATETIME_FORMAT = "Y-m-d H:i:s T"

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
# Front-end libraries come from the npm registry (package.json) and are served from node_modules.
NODE_MODULES = BASE_DIR / "node_modules"
STATICFILES_DIRS = [
    BASE_DIR / "static",
    ("vendor/chart.js", NODE_MODULES / "chart.js" / "dist"),
    ("vendor/novnc", NODE_MODULES / "@novnc" / "novnc"),
    ("vendor/xterm", NODE_MODULES / "@xterm" / "xterm"),
    ("vendor/xterm-addon-fit", NODE_MODULES / "@xterm" / "addon-fit" / "lib"),
    ("vendor/codemirror", NODE_MODULES / "codemirror"),
]
# Icons (npm lucide-static) are inlined into the pages by {% icon %} (webkvm/templatetags/icons.py), read from
# here and never served: its 2,500 files as static files would add seconds to every process's start
# (WhiteNoise indexes each one).
WEBKVM_ICONS_DIR = NODE_MODULES / "lucide-static" / "icons"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    # A 403 is one line (who, method, path, why), not a traceback: webkvm/request_log.py.
    "filters": {"refusal_line": {"()": "webkvm.request_log.RefusalLine"}},
    "loggers": {"django.request": {"filters": ["refusal_line"]}},
    "root": {"handlers": ["console"], "level": config.env_str("WEBKVM_LOG_LEVEL", "INFO").upper()},
}

# The panel's own files outside the database: ssh identity, pinned host keys, credential key.
WEBKVM_SSH_DIR: Path = DATA_DIR / "ssh"
WEBKVM_CREDENTIAL_KEY_FILE = Path(config.env_str("WEBKVM_CREDENTIAL_KEY_FILE", str(DATA_DIR / "credentials.key")))
# Deadlines (seconds) for opening a hypervisor connection and for one call made for a request.
WEBKVM_OPEN_TIMEOUT = config.env_int("WEBKVM_OPEN_TIMEOUT", 4, minimum=1, maximum=60)
WEBKVM_CALL_TIMEOUT = config.env_int("WEBKVM_CALL_TIMEOUT", 3, minimum=1, maximum=300)
# Calls to one host that run at once; more callers queue, each within its deadline ("busy", never "unreachable").
WEBKVM_HOST_SLOTS = config.env_int("WEBKVM_HOST_SLOTS", 4, minimum=1, maximum=64)
# Seconds an upload may receive nothing before it is ended and its half-written volume deleted.
WEBKVM_UPLOAD_STALL_SECONDS: float = config.env_int("WEBKVM_UPLOAD_STALL_SECONDS", 60, minimum=1, maximum=3600)
# Identical reads of a host (VM list, host overview, pools, networks) are shared and kept this long (ms);
# a change event from the host drops them sooner.
WEBKVM_READ_FRESH_MS = config.env_int("WEBKVM_READ_FRESH_MS", 1000, minimum=0, maximum=60000)
# Live pages: the host watcher's bulk-stats interval (ms) for CPU and memory figures; state changes are pushed
# at once from libvirt's events.
WEBKVM_LIVE_INTERVAL_MS = config.env_int("WEBKVM_LIVE_INTERVAL_MS", 1000, minimum=200, maximum=60000)
# Storage pools may only be created below these folders of a hypervisor (dir pools, NFS mount points).
WEBKVM_POOL_ROOTS: list[str] = config.env_paths(
    "WEBKVM_POOL_ROOTS", ["/var/lib/libvirt/images", "/var/lib/libvirt/boot", "/srv/libvirt"])
# libvirt's test driver is a demo and test aid, refused unless this is on: it reads its world file inside the
# panel's own process. `make run` turns it on for its demo host where no local libvirtd runs.
WEBKVM_TEST_DRIVER = config.env_bool("WEBKVM_TEST_DRIVER", False)
# Where a test-driver host's world file may lie (besides libvirt's built-in world, "default"): the project's own.
WEBKVM_TEST_WORLDS: list[str] = [str(BASE_DIR / "tests" / "worlds")]
# Folders a TLS host's client certificate folder (pkipath) may lie below: libvirt reads the key from it inside
# the panel's own process.
WEBKVM_PKI_ROOTS: list[str] = config.env_paths("WEBKVM_PKI_ROOTS", [str(DATA_DIR / "pki")])
# A console session re-checks login, grant and VM this often (seconds) and closes when one is gone.
WEBKVM_CONSOLE_RECHECK_SECONDS: float = config.env_int("WEBKVM_CONSOLE_RECHECK_SECONDS", 5, minimum=1, maximum=60)
# Request bodies (bytes) a logged-in user may send; anonymous ones get 64 KiB (webkvm/body_limit.py). Checked
# before Django reads the body; the streamed volume upload is exempt. Keep it above the XML editor's 2 MiB.
WEBKVM_MAX_BODY_BYTES = config.env_int("WEBKVM_MAX_BODY_BYTES", 4 << 20, minimum=64 << 10, maximum=1 << 30)
# Polled and JSON routes (declared polled=True) answer each user at most WEBKVM_POLL_LIMIT requests per route
# in WEBKVM_POLL_WINDOW_SECONDS, then 429 (webkvm/rate_limit.py); a page polling every 2 s uses 5 per 10 s.
WEBKVM_POLL_LIMIT = config.env_int("WEBKVM_POLL_LIMIT", 60, minimum=1, maximum=100000)
WEBKVM_POLL_WINDOW_SECONDS = config.env_int("WEBKVM_POLL_WINDOW_SECONDS", 10, minimum=1, maximum=3600)

# The REST API (api/): personal tokens or the session (with CSRF); JSON only; paginated lists; throttled
# callers get 429; errors as {"code", "message", "fields"} (api/errors.py).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["api.auth.TokenAuthentication",
                                       "rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated", "api.auth.ReadOnlyTokens"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_CLASSES": ["api.throttles.PerUser", "api.throttles.PerAddress"],
    "DEFAULT_THROTTLE_RATES": {"user": config.env_rate("WEBKVM_API_RATE", "600/min"), "anon": "60/min"},
    "EXCEPTION_HANDLER": "api.errors.handle",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "SCHEMA_COERCE_PATH_PK": False,  # the schema names {pk} as the URL does (not {id})
}
SPECTACULAR_SETTINGS = {
    "TITLE": "webkvm API",
    "DESCRIPTION": "The panel's REST API. Authenticate with a personal token (Authorization: Bearer TOKEN; "
                   "make one under your user menu, API tokens) or the browser session. Errors are JSON: "
                   "{code, message, fields}.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1/",
    # One name per choice set the forms share (a volume's format is a new disk's), one per field named kind.
    "ENUM_NAME_OVERRIDES": {"VolumeFormatEnum": "virt.volumes.VOLUME_FORMATS",
                            "SharedKindEnum": "webkvm.models.SharedKind"},
}
