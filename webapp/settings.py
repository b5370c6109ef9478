"""Django settings, all from the environment (see docs/service.md).

``DATABASE_URL``   default: SQLite under ``var/``; PostgreSQL in CI and production
``REDIS_URL``      Celery broker; without it, kombu's filesystem transport under ``var/broker/``
``SECRET_KEY``     required unless ``DEBUG`` is on (production is the default)
``DEBUG``          default off; ``make run`` and the tests turn it on explicitly
``MEDIA_ROOT``     artifact store, default ``var/media``; shared by every worker
``ALLOWED_HOSTS``  comma-separated, default ``127.0.0.1,localhost``
``SECURE_SSL_REDIRECT``, ``SECURE_COOKIES``  default on once ``DEBUG`` is off (HTTPS only)
``PONAS_VAR_DIR``  where local state lives, default ``var/`` in the repository
``DATABASE_NAME``  overrides the database name of ``DATABASE_URL`` (test workers use it to
                   reach the test database)
``CELERY_VISIBILITY_TIMEOUT``  seconds before Redis re-delivers an unacknowledged task
``CACHE_URL``      a Redis URL for the cache the sign-in throttles count in (all web processes
                   share it); without it each process counts on its own
``PONAS_*``        limits on what web users may ask for (below; docs/security.md)
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue as KombuQueue

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("PONAS_VAR_DIR") or BASE_DIR / "var")
# Under pytest (and in the workers tests start) the queues, test database and artifacts are
# kept apart from the ones `make run` uses on the same machine.
TESTING = "pytest" in sys.modules or os.environ.get("PONAS_TESTING") == "1"
# One test session's database, queues and artifacts are its own, even when several sessions
# run at once on one checkout; the workers a session starts get its id through the environment.
TEST_ID = os.environ.get("PONAS_TEST_ID") or str(os.getpid())
TEST_DIR = VAR_DIR / "test" / TEST_ID  # that session's SQLite file and broker folder
if TESTING:
    TEST_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={value!r}: expected true/false, 1/0, yes/no or on/off")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name) or str(default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r}: expected an integer") from None


# Fail closed: production is the default. `make run` (the Makefile) and the tests (pyproject.toml,
# [tool.pytest.ini_options] env) set DEBUG=1 themselves.
DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "SECRET_KEY is not set: with DEBUG off the server needs a secret key; set SECRET_KEY "
            "to a long random string (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(50))'`), or DEBUG=1 for local development"
        )
    SECRET_KEY = "django-insecure-local-development-only"  # noqa: S105 (DEBUG only)

ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",") if h
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "webapp.runs",
    "webapp.pages",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

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

# ---- database -------------------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'ponas.sqlite3'}", conn_max_age=60, conn_health_checks=True
    )
}
if os.environ.get("DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["DATABASE_NAME"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the workers write to one file: WAL lets readers go on while a worker
    # writes, IMMEDIATE transactions take the write lock up front (no upgrade deadlocks).
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # a file, not :memory:, so that test workers (separate processes) share it
    DATABASES["default"]["TEST"] = {"NAME": str(TEST_DIR / "ponas.sqlite3")}
else:
    DATABASES["default"]["TEST"] = {"NAME": f"test_{DATABASES['default']['NAME']}_{TEST_ID}"}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:  # users are created by the hundred in tests; hashing strength is not under test
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# ---- files ----------------------------------------------------------------------------------

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns about a missing one
STATICFILES_DIRS = [p for p in [BASE_DIR / "static"] if p.is_dir()]
MEDIA_URL = "media/"  # never served directly: downloads go through owner-checked API views
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT") or VAR_DIR / "media")  # tests: a tmp folder
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG or TESTING
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG  # no collectstatic needed for local runs

# ---- security (effective with DEBUG off; see `manage.py check --deploy`) ---------------------

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
# Production sits behind TLS (a proxy that sets X-Forwarded-Proto); plain-HTTP setups (loopback
# benchmarks) turn the redirect off with SECURE_SSL_REDIRECT=0.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", 0 if DEBUG else 3600))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
X_FRAME_OPTIONS = "DENY"
CSRF_TRUSTED_ORIGINS = [o for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o]

# ---- REST API -------------------------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: an anonymous API request gets 401 with a WWW-Authenticate header, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "knox.auth.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "webapp.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # JSON nested at most webapp.parsers.MAX_JSON_DEPTH levels (deeper: a 400, not a RecursionError)
    "DEFAULT_PARSER_CLASSES": [
        "webapp.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    # sign-in attempts (the token endpoint, the login page, the admin login): webapp/accounts.py
    # failed sign-ins only: per user name from one address, per user name from any address
    # (the ceiling against guessing from many), per address for any name
    "DEFAULT_THROTTLE_RATES": {
        "sign_in_user_address": os.environ.get("PONAS_SIGN_IN_RATE_USER_ADDRESS", "5/minute"),
        "sign_in_user": os.environ.get("PONAS_SIGN_IN_RATE_USER", "30/minute"),
        "sign_in_address": os.environ.get("PONAS_SIGN_IN_RATE_ADDRESS", "20/minute"),
    },
    # X-Forwarded-For is trusted from this many proxies (the TLS proxy in front: 1)
    # (0: the connecting address; a forged X-Forwarded-For header then changes nothing)
    "NUM_PROXIES": env_int("PONAS_NUM_PROXIES", 0),
    "EXCEPTION_HANDLER": "webapp.api.exception_handler",
    # `?format=csv` on runs/{id}/table/ is ours, not DRF's renderer switch
    "URL_FORMAT_OVERRIDE": None,
}

# API tokens (django-rest-knox): stored as hashes, expire after PONAS_TOKEN_TTL_HOURS, revoked
# on the Tokens page, by an admin, or all at once when the user's password changes.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=float(os.environ.get("PONAS_TOKEN_TTL_HOURS", 24 * 30))),
    "AUTH_HEADER_PREFIX": "Token",
}

# The throttles count in this cache: set CACHE_URL (Redis) so that every web process shares it.
# Tests count in their own process (a test clears the cache, which on Redis empties a database).
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if os.environ.get("CACHE_URL") and not TESTING:
    CACHES["default"] = {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ["CACHE_URL"],
    }

SPECTACULAR_SETTINGS = {
    "TITLE": "PONAS Studio API",
    "DESCRIPTION": "Searches (accuracy tables), budget previews and deployments.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from drf-spectacular-sidecar, served by us: no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "webapp.api.document_common_errors",
    ],
}

# ---- Celery ---------------------------------------------------------------------------------

REDIS_URL = os.environ.get("REDIS_URL", "")
BROKER_DIR = TEST_DIR / "broker" if TESTING else VAR_DIR / "broker"
VISIBILITY_TIMEOUT = int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", 12 * 3600))
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # A task is re-delivered when its worker has not acknowledged it in this time (a worker
        # acknowledges when the task ends): longer than the longest task.
        "visibility_timeout": VISIBILITY_TIMEOUT,
        **({"global_keyprefix": f"ponas-test-{TEST_ID}:"} if TESTING else {}),
    }
else:
    # No server needed: messages are files. Consumers claim a message by renaming it into
    # processed/ (atomic on one filesystem), so several local workers can share the queue.
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": True,
        "polling_interval": 0.2,
    }
# The embedded broker's delivered messages (processed/) are removed by the workers once older
# than this (tasks/watchdog.py): they are read when delivered and never again.
PONAS_BROKER_KEEP_SECONDS = float(os.environ.get("PONAS_BROKER_KEEP_SECONDS", 600))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True  # results go to the database, not a result backend
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {
    # heavy work: GPU machines run `celery -A webapp worker -Q gpu`
    "tasks.search.run_search": {"queue": "gpu"},
    "tasks.search.evaluate_candidate": {"queue": "gpu"},
    "tasks.deploy.build_deployment": {"queue": "gpu"},
    "tasks.profile.profile_latency": {"queue": "gpu"},
    "tasks.audit.train_network": {"queue": "gpu"},
    "tasks.audit.finish_audit": {"queue": "default"},
    "tasks.watchdog.reap_stuck_work": {"queue": "default"},
}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# Seconds between progress/heartbeat writes and cancel checks of a running task.
PONAS_POLL_SECONDS = float(os.environ.get("PONAS_POLL_SECONDS", 1.0))
# Lost work (docs/service.md "Leases and recovery"). A task's lease not renewed for
# PONAS_HEARTBEAT_TIMEOUT seconds lost its worker (killed, its machine gone): its run, build or
# profile is re-queued and its task sent again at once (at most PONAS_AUTO_RESUMES times until a
# manual resume), then marked failed. Workers renew their leases every PONAS_HEARTBEAT_SECONDS
# while the work makes progress (a step, a batch, an evaluation): work that made none for
# PONAS_PROGRESS_TIMEOUT seconds (a hung step) is reaped like a dead worker's. Workers and beat
# look every PONAS_WATCHDOG_SECONDS (webapp/runs/watchdog.py); a worker that died on the same
# machine as a looking worker is seen at the next look. With these defaults a killed worker's
# work runs again within about 60 + 15 s (plus the task's start) on any machine; a heartbeat
# must be late six times over for live work to look lost.
PONAS_HEARTBEAT_TIMEOUT = float(os.environ.get("PONAS_HEARTBEAT_TIMEOUT", 60))
PONAS_HEARTBEAT_SECONDS = float(
    os.environ.get("PONAS_HEARTBEAT_SECONDS", min(10.0, PONAS_HEARTBEAT_TIMEOUT / 6))
)
PONAS_PROGRESS_TIMEOUT = float(os.environ.get("PONAS_PROGRESS_TIMEOUT", 900))
PONAS_AUTO_RESUMES = int(os.environ.get("PONAS_AUTO_RESUMES", 2))
PONAS_WATCHDOG_SECONDS = float(
    os.environ.get("PONAS_WATCHDOG_SECONDS", min(15.0, PONAS_HEARTBEAT_TIMEOUT / 4))
)
# Celery beat (`make run` starts it; in production: `celery -A webapp beat`) sends the watchdog's
# look every PONAS_WATCHDOG_SECONDS; a look not taken by then is dropped, not piled up.
CELERY_BEAT_SCHEDULE = {
    "reap-stuck-work": {
        "task": "tasks.watchdog.reap_stuck_work",
        "schedule": PONAS_WATCHDOG_SECONDS,
        "options": {"expires": PONAS_WATCHDOG_SECONDS},
    }
}
CELERY_BEAT_SCHEDULE_FILENAME = str((TEST_DIR if TESTING else VAR_DIR) / "celerybeat-schedule")

# ---- the service at fleet scale (docs/service.md "Leases") ------------------------------------

# A plain `celery -A webapp worker` consumes both queues (one machine needs nothing else);
# `-Q gpu` or `-Q default` picks one.
CELERY_TASK_QUEUES = (KombuQueue("default"), KombuQueue("gpu"))
# No task may outlive the visibility timeout (Redis would hand it out again): stage 1 runs as
# a chain of tasks of at most PONAS_STAGE1_TASK_SECONDS each (whole epochs; the next continues
# from the checkpoint), and every task has hard limits below the timeout.
PONAS_STAGE1_TASK_SECONDS = float(
    os.environ.get("PONAS_STAGE1_TASK_SECONDS", min(3600.0, VISIBILITY_TIMEOUT / 4))
)
CELERY_TASK_SOFT_TIME_LIMIT = int(VISIBILITY_TIMEOUT * 0.8)
CELERY_TASK_TIME_LIMIT = int(VISIBILITY_TIMEOUT * 0.9)
# A piece of work whose worker process died this many times in one attempt (killed, out of
# memory) fails the run with the reason instead of being delivered again forever.
PONAS_MAX_DEATHS = int(os.environ.get("PONAS_MAX_DEATHS", 3))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "tasks": {"handlers": ["console"], "level": "INFO"},
        "webapp": {"handlers": ["console"], "level": "INFO"},
    },
}

# ---- what web users may ask for (docs/security.md) -------------------------------------------


# Registered datasets' folders must lie under one of these (colon-separated); none: only the
# bundled datasets (digits) can be used from the web and the API.
PONAS_DATA_ROOTS = [
    Path(p).expanduser() for p in os.environ.get("PONAS_DATA_ROOTS", "").split(":") if p.strip()
]
# Upper bounds of the search settings a web or API user may give (the CLI is not bound by them):
# PONAS_MAX_<SETTING>, e.g. PONAS_MAX_NGPU=8.
PONAS_LIMITS = {
    key: env_int(f"PONAS_MAX_{key.upper()}", default)
    for key, default in {
        "ngpu": 8,  # processes (DDP), one per GPU
        "num_workers": 16,  # data-loading processes per training process
        "input_size": 512,  # pixels per side
        "batch_size": 1024,
        "feature_cache_mb": 8192,  # stage-2 prefix features held in memory
        "epochs": 1000,
        "finetune_steps": 10_000,
        "suffix_samples": 64,
        "bn_batches": 1000,
        "eval_batches": 10_000,
        "warmup_epochs": 100,
    }.items()
}
# Images an in-memory dataset (digits) holds at the run's input size, as float32: a run whose
# data would need more than this is refused before it is queued.
PONAS_MAX_DATA_MEMORY_MB = env_int("PONAS_MAX_DATA_MEMORY_MB", 4096)
# Per user: runs queued or running, deployment builds queued or running (429 beyond them).
PONAS_MAX_ACTIVE_RUNS = env_int("PONAS_MAX_ACTIVE_RUNS", 4)
PONAS_MAX_ACTIVE_DEPLOYMENTS = env_int("PONAS_MAX_ACTIVE_DEPLOYMENTS", 4)
PONAS_MAX_ACTIVE_PROFILES = env_int("PONAS_MAX_ACTIVE_PROFILES", 4)
PONAS_MAX_ACTIVE_AUDITS = env_int("PONAS_MAX_ACTIVE_AUDITS", 2)
# What one table audit may ask for (webapp/runs/limits.py): budgets, networks drawn per budget,
# from-scratch epochs, seeds per network, trainings in all, and the size of the space it draws
# from (ponas.audit enumerates every network of the space to find the cost-matched ones).
PONAS_AUDIT_LIMITS = {
    key: env_int(f"PONAS_AUDIT_MAX_{key.upper()}", default)
    for key, default in {
        "budgets": 8,
        "networks": 50,
        "epochs": 100,
        "seeds": 5,
        "trainings": 500,
        "space": 2_000_000,
    }.items()
}
# Queues a user (not staff) may send heavy work to; `default` carries every run's bookkeeping.
PONAS_USER_QUEUES = [
    q.strip() for q in os.environ.get("PONAS_USER_QUEUES", "gpu").split(",") if q.strip()
]
# A device profile times every block in whole networks at this batch size, after this many
# warm-up passes, as the median of this many timed passes (tests make it tiny).
PONAS_PROFILE_BATCH = env_int("PONAS_PROFILE_BATCH", 1)
PONAS_PROFILE_WARMUP = env_int("PONAS_PROFILE_WARMUP", 1 if TESTING else 5)
PONAS_PROFILE_REPEATS = env_int("PONAS_PROFILE_REPEATS", 2 if TESTING else 20)
# Metric points one run-detail response carries at most (the page asks for new ones with ?since=).
PONAS_METRICS_LIMIT = env_int("PONAS_METRICS_LIMIT", 2000)
