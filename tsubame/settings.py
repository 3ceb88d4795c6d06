"""tsubame settings: every value comes from an environment variable with a safe default.

The README has one table listing each variable. Defaults run a complete instance on a fresh
machine: SQLite in WAL mode, the django-q2 ORM broker, and database polling for live output.
"""

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def envbool(name: str, default: str) -> bool:
    return os.getenv(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.getenv(name) or default)


def envfloat(name: str, default: float) -> float:
    return float(os.getenv(name) or default)


def envlist(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.getenv(name, default).split(",") if item.strip()]


def envsecret(name: str) -> str | None:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/Kubernetes secrets)."""
    if value := os.getenv(name):
        return value
    if path := os.getenv(f"{name}_FILE"):
        return Path(path).read_text().strip()
    return None


DATA_DIR = Path(os.getenv("TSUBAME_DATA_DIR") or BASE_DIR / "data")
DATA_DIR.mkdir(parents=True, exist_ok=True)


def generated_secret(filename: str, make: Callable[[], str]) -> str:
    """Read a secret kept in DATA_DIR, creating it on first use.

    The first writer wins when a web and a worker process start together, so both end up
    with the same key instead of each generating its own.
    """
    path = DATA_DIR / filename
    if not path.exists():
        # Written in full under a private name, then linked into place: a reader never sees
        # a half-written file, and link() fails if another process got there first.
        draft = path.with_name(f".{filename}.{os.getpid()}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(make() + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


SECRET_KEY = envsecret("SECRET_KEY") or generated_secret(
    "secret_key", lambda: secrets.token_urlsafe(50)
)
# Fernet keys for credentials at rest, newest first: the first encrypts, all decrypt, so a
# key is rotated by prepending a new one and re-saving (see README).
ENCRYPTION_KEYS = [
    key.strip()
    for key in (
        envsecret("ENCRYPTION_KEYS")
        or generated_secret("encryption_keys", lambda: Fernet.generate_key().decode())
    ).split(",")
    if key.strip()
]

DEBUG = envbool("DEBUG", "false")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "tsubame.apps.AdminConfig",  # Django's admin with throttled password checks
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_q",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "servers",
    "jobs",
    "executions",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "tsubame.middleware.ApiNotFoundMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "tsubame.middleware.TimeZoneMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "tsubame.middleware.ContentSecurityPolicyMiddleware",
]

# Scripts only from our static files. Styles allow inline because the terminal renderer
# (xterm.js) and the code editor inject <style> elements at run time.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'; object-src 'none'"
)

ROOT_URLCONF = "tsubame.urls"
ASGI_APPLICATION = "tsubame.asgi.application"
WSGI_APPLICATION = "tsubame.wsgi.application"

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
                "accounts.context_processors.memberships",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL") or f"sqlite:///{DATA_DIR / 'tsubame.sqlite3'}",
        conn_max_age=envint("DB_CONN_MAX_AGE", 0),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and (
    DB_POOL_SIZE := envint("DB_POOL_SIZE", 20)
):
    # Each process keeps its connections in Django's pool (psycopg_pool) instead of opening
    # one per request, consumer read and host thread. Checked when taken: a connection the
    # database dropped (a restart, a failover) is replaced instead of failing a request.
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django must not too
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": 1,
        "max_size": DB_POOL_SIZE,
        # Short: in a database outage each request fails within this, instead of holding a
        # web thread, and each worker's tick goes on.
        "timeout": envfloat("DB_POOL_TIMEOUT_SECONDS", 5.0),
    }
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets the web process read while a worker writes output; IMMEDIATE makes
        # writers queue on the busy timeout instead of failing with "database is locked".
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # A file, not :memory:, so worker subprocesses started by the tests see the test data.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "accounts.backends.TeamRoleBackend",  # per-team roles
]
# Password logins are refused for LOGIN_LOCKOUT_SECONDS after this many recent failures.
LOGIN_MAX_FAILURES_PER_USER = envint("LOGIN_MAX_FAILURES_PER_USER", 5)
LOGIN_MAX_FAILURES_PER_ADDRESS = envint("LOGIN_MAX_FAILURES_PER_ADDRESS", 20)
LOGIN_LOCKOUT_SECONDS = envint("LOGIN_LOCKOUT_SECONDS", 900)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
# Vendored front-end libraries (see tsubame/static/vendor/VENDORED.md): never a CDN.
STATICFILES_DIRS = [BASE_DIR / "tsubame" / "static"]
STATIC_ROOT = Path(os.getenv("STATIC_ROOT") or BASE_DIR / "staticfiles")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "false")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE

# HTTPS in production (all off by default: a fresh instance serves plain HTTP on 127.0.0.1).
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", "false")
# Load balancers and orchestrators probe over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", "false")
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", "false")
# Behind a proxy that terminates TLS: the request header, as Django names it, and the value
# that mean the client used HTTPS, e.g. "HTTP_X_FORWARDED_PROTO,https". Set it only when the
# proxy always sets or strips that header, or any client can claim HTTPS.
_proxy_ssl_header = envlist("SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header:
    if len(_proxy_ssl_header) != 2:
        raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER is HEADER,VALUE")
    SECURE_PROXY_SSL_HEADER = (_proxy_ssl_header[0], _proxy_ssl_header[1])

REDIS_URL = os.getenv("REDIS_URL", "")
# A Redis that does not answer (host down, packets dropped) must not hang a request that
# queues a run or a worker that rings: without it, a connect waits for the OS's TCP timeout.
REDIS_CONNECT_TIMEOUT_SECONDS = envfloat("REDIS_CONNECT_TIMEOUT_SECONDS", 5.0)

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # Longer than channels-redis' 5 s blocking read: redis-py's own default is also
            # 5 s, and the two racing made idle live-output consumers crash with a timeout.
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": 30,
                        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT_SECONDS,
                    }
                ]
            },
        }
    }
else:
    # In-process only: the worker cannot ring a browser's consumer through it, so the
    # consumer falls back to polling the database (LIVE_POLL_SECONDS below).
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# How often a live-output consumer looks at the database without a doorbell. With Redis the
# doorbell does the work and polling is only a safety net.
LIVE_POLL_SECONDS = envfloat("LIVE_POLL_SECONDS", 5.0 if REDIS_URL else 0.1)
# While the channel layer fails (Redis down), consumers poll this often instead, and try to
# join their group again as often.
LIVE_FALLBACK_POLL_SECONDS = envfloat("LIVE_FALLBACK_POLL_SECONDS", 0.5)
# An open live-output socket checks this often that its session and access still hold.
LIVE_ACCESS_RECHECK_SECONDS = envfloat("LIVE_ACCESS_RECHECK_SECONDS", 5.0)
# The most live output a viewer may have waiting to be sent (a slow or stalled client): past
# it, the viewer leaves the shared feed and catches up from the database.
LIVE_VIEWER_BUFFER_BYTES = envint("LIVE_VIEWER_BUFFER_BYTES", 4 * 1024 * 1024)

# The longest one execution may occupy a worker process; django-q2 kills it after this.
EXECUTION_MAX_SECONDS = envint("EXECUTION_MAX_SECONDS", 7 * 24 * 3600)
# A running execution writes a heartbeat this often; one whose heartbeat is older than
# EXECUTION_LOST_AFTER_SECONDS is marked lost by any worker's reaper.
EXECUTION_HEARTBEAT_SECONDS = envfloat("EXECUTION_HEARTBEAT_SECONDS", 5.0)
EXECUTION_LOST_AFTER_SECONDS = envfloat("EXECUTION_LOST_AFTER_SECONDS", 30.0)
EXECUTION_REAP_EVERY_SECONDS = envfloat("EXECUTION_REAP_EVERY_SECONDS", 10.0)
# A queued execution no worker has claimed for this long gets its task queued again.
EXECUTION_REQUEUE_AFTER_SECONDS = envfloat("EXECUTION_REQUEUE_AFTER_SECONDS", 300.0)
# An execution event whose reactions failed (or whose processor died) is tried again after
# this long; see executions.reactions.
EXECUTION_EVENT_RETRY_SECONDS = envfloat("EXECUTION_EVENT_RETRY_SECONDS", 60.0)
# A chained run (jobs.chains) more than this many links below the run that began the chain
# is not started: the guard against a cycle that slipped past the check when links were saved.
CHAIN_MAX_DEPTH = envint("CHAIN_MAX_DEPTH", 10)
# Each worker fires due schedule slots and reacts to execution events this often.
SCHEDULE_TICK_SECONDS = envfloat("SCHEDULE_TICK_SECONDS", 1.0)
# How many batches of due schedules a worker fires at once, each on its own database
# connection. SQLite has one writer at a time, so more than one only waits there.
SCHEDULE_FIRE_THREADS = max(
    1,
    envint("SCHEDULE_FIRE_THREADS", 1 if DATABASES["default"]["ENGINE"].endswith("sqlite3") else 4),
)
# A slot fired later than this after its time was missed (see jobs.scheduler).
SCHEDULE_MISFIRE_GRACE_SECONDS = envfloat("SCHEDULE_MISFIRE_GRACE_SECONDS", 60.0)
# How often a running execution checks for a cancel request.
EXECUTION_CANCEL_POLL_SECONDS = envfloat("EXECUTION_CANCEL_POLL_SECONDS", 0.5)
# The most servers one execution runs at the same time. Each holds a thread and an SSH
# connection in its worker (database connections do not grow with it); jobs asking for more
# are refused.
EXECUTION_MAX_PARALLEL = max(1, envint("EXECUTION_MAX_PARALLEL", 50))
# Seconds between TERM and KILL when a run is cancelled or times out.
EXECUTION_KILL_GRACE_SECONDS = envfloat("EXECUTION_KILL_GRACE_SECONDS", 2.0)
SSH_CONNECT_TIMEOUT_SECONDS = envfloat("SSH_CONNECT_TIMEOUT_SECONDS", 10.0)
SSH_HEARTBEAT_SECONDS = envfloat("SSH_HEARTBEAT_SECONDS", 5.0)
# How long a worker process keeps a run's SSH connection open for the next run on the same
# server (servers.ssh.pool); 0: a new login for every run.
SSH_KEEP_IDLE_SECONDS = envfloat("SSH_KEEP_IDLE_SECONDS", 60.0)

# Output is written in chunks of at most this many bytes, at most every OUTPUT_FLUSH_SECONDS.
# At most 128 KiB: one chunk must fit in a WebSocket message once JSON-encoded (up to ~4x).
OUTPUT_CHUNK_BYTES = min(128 * 1024, max(4096, envint("OUTPUT_CHUNK_BYTES", 64 * 1024)))
OUTPUT_FLUSH_SECONDS = envfloat("OUTPUT_FLUSH_SECONDS", 0.05)
# Each worker indexes stored output for search in transactions of about this many bytes
# (SQLite's one writer waits for each: ~30 ms at 256 KiB), looking again after
# SEARCH_INDEX_IDLE_SECONDS when nothing waits.
SEARCH_INDEX_BATCH_BYTES = max(4096, envint("SEARCH_INDEX_BATCH_BYTES", 256 * 1024))
SEARCH_INDEX_IDLE_SECONDS = envfloat("SEARCH_INDEX_IDLE_SECONDS", 1.0)

Q_CLUSTER = {
    "name": os.getenv("Q_CLUSTER_NAME", "tsubame"),
    "workers": envint("WORKERS", 4),
    "recycle": 50,
    # Fetch few tasks ahead: a fetched task waits in this cluster's memory, lost if it dies.
    "queue_limit": max(1, envint("WORKERS", 4)),
    "timeout": EXECUTION_MAX_SECONDS,
    # Redelivery would only hit the claim guard of an execution that is already taken, so
    # it is pushed past the timeout to keep the queue quiet.
    "retry": EXECUTION_MAX_SECONDS + 3600,
    "max_attempts": 1,
    "ack_failures": True,
    "save_limit": 1000,
    # How often the ORM broker looks for a new task (Redis hands one over at once): a run
    # from the UI waits half of it on average. 50 small queries a second per worker.
    "poll": 0.02,
    "catch_up": False,
    "label": "Task queue",
}
if REDIS_URL:
    # django-q2 hands a URL to redis.from_url, which reads connection options from its query.
    Q_CLUSTER["redis"] = (
        REDIS_URL
        + ("&" if "?" in REDIS_URL else "?")
        + f"socket_connect_timeout={REDIS_CONNECT_TIMEOUT_SECONDS}"
    )
else:
    Q_CLUSTER["orm"] = "default"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

# The largest job script (UTF-8 bytes): the UI, the admin and the API refuse a larger one
# with the same message (jobs.models.validate_script_size).
JOB_SCRIPT_MAX_BYTES = envint("JOB_SCRIPT_MAX_BYTES", 1024 * 1024)
# The largest JSON body the API accepts (a job's script travels in it).
API_MAX_BODY_BYTES = envint("API_MAX_BODY_BYTES", 5 * 1024 * 1024)
# The largest request body the web server (tsubame.webserver) reads at all: a larger one is
# refused with 413 before it is buffered. Above the API's limit, so the API answers those,
# and above three times the script limit, as a form URL-encodes a byte into up to three.
HTTP_MAX_BODY_BYTES = envint(
    "HTTP_MAX_BODY_BYTES", max(API_MAX_BODY_BYTES, 3 * JOB_SCRIPT_MAX_BYTES) + 1024 * 1024
)
# Django answers a larger form body with a bare 400 page before any form sees it: let it read
# whatever the web server lets through, so a form refuses a too-large script itself.
DATA_UPLOAD_MAX_MEMORY_SIZE = HTTP_MAX_BODY_BYTES
# Every API token expires, at most this many days after it is made.
API_TOKEN_MAX_DAYS = envint("API_TOKEN_MAX_DAYS", 365)
# The largest body a webhook (/hooks/<key>/) accepts; a larger one is answered 413 unread.
WEBHOOK_MAX_BODY_BYTES = envint("WEBHOOK_MAX_BODY_BYTES", 256 * 1024)

# Where people reach this instance: notifications link to executions under it.
SITE_URL = os.getenv("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# The longest one attempt at sending a notification may take (connect, send, answer).
NOTIFICATION_TIMEOUT_SECONDS = envfloat("NOTIFICATION_TIMEOUT_SECONDS", 30.0)
# How many notifications each worker sends at the same time, and how often it looks for due
# ones when it has none.
NOTIFICATION_SENDERS = max(1, envint("NOTIFICATION_SENDERS", 4))
NOTIFICATION_POLL_SECONDS = envfloat("NOTIFICATION_POLL_SECONDS", 1.0)

# /metrics answers a request bearing this token (or a superuser's API token); unset: only
# superusers' tokens.
METRICS_TOKEN = envsecret("METRICS_TOKEN")
# A worker whose heartbeat is older than this is not counted as live (/readyz, /metrics).
WORKER_HEARTBEAT_STALE_SECONDS = envfloat("WORKER_HEARTBEAT_STALE_SECONDS", 60.0)
# Retention (per team, see the README): how often each worker prunes, and how many rows it
# deletes per transaction, so that a live run's heartbeat and output never wait behind it.
PRUNE_EVERY_SECONDS = envfloat("PRUNE_EVERY_SECONDS", 24 * 3600.0)
PRUNE_BATCH_SIZE = max(1, envint("PRUNE_BATCH_SIZE", 500))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api.authentication.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["tsubame.api.permissions.PolicyPermission"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["tsubame.api.parsers.LimitedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": "tsubame.api.pagination.Pagination",
    "DEFAULT_FILTER_BACKENDS": [
        "django_filters.rest_framework.DjangoFilterBackend",
        "rest_framework.filters.OrderingFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "tsubame.api.base.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "tsubame API",
    "DESCRIPTION": "Servers, jobs and their executions. Authenticate with a personal API "
    "token: `Authorization: Bearer <token>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from local static files (drf-spectacular-sidecar), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Execution.trigger and AuditEvent.source share one vocabulary.
    "ENUM_NAME_OVERRIDES": {
        "SourceEnum": "accounts.models.Source",
        # Two models have a status field: executions keep the name they always had.
        "StatusEnum": "executions.models.Status",
        "DeliveryStatusEnum": "notifications.models.Delivery.Status",
    },
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "tsubame.api.schema.document_errors",  # the error responses every operation shares
    ],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    # tsubame reports every SSH failure on the host run itself; paramiko's own tracebacks
    # for the same events are noise.
    "loggers": {"paramiko": {"level": "CRITICAL"}},
}
