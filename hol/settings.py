"""HOL settings. Every knob is read from the environment and has an embedded default.

With no DATABASE_URL / REDIS_URL set, HOL runs on a SQLite file and a Redis server of its own,
both under HOL_DATA_DIR. Importing this module starts nothing and writes nothing: the
entry points (manage.py, `./bin/hol`, the ASGI and Celery apps, the test run) prepare the data dir
(`hol.datadir.prepare`) and start the embedded Redis where they need it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url

from hol import datadir
from hol.environment import env_bool, env_int, env_list, env_secret

BASE_DIR = Path(__file__).resolve().parent.parent


# Where the embedded database, Redis socket, secrets and demo passwords live (mode 0700).
HOL_DATA_DIR = datadir.data_dir_from_env()

# Django's debug pages (settings, URL patterns) only when asked for: HOL_DEBUG=1.
DEBUG = env_bool("HOL_DEBUG", False)
# Signs sessions and JWTs: HOL_SECRET_KEY, else a random key made once per data dir.
SECRET_KEY = env_secret("HOL_SECRET_KEY", HOL_DATA_DIR, datadir.SECRET_KEY_FILE)

ALLOWED_HOSTS = env_list("HOL_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("HOL_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "hol.apps.HolConfig",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # times in words ("3 minutes ago")
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally, no CDN
    "django_filters",
    "guardian",
    "channels",
    "django_celery_beat",
    "axes",
    "audit",
    "tasks",
    "approvals",
    "chat",
    "notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",  # the pages' Content-Security-Policy (hol/settings_pages.py)
    "hol.static_files.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so it sees the lockout a failed sign-in flagged and answers 429 for it.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "hol.urls"
ASGI_APPLICATION = "hol.asgi.application"
WSGI_APPLICATION = None

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
                "hol.pages.nav_context",
            ],
        },
    },
]

# --- Database: DATABASE_URL (PostgreSQL) or the embedded SQLite file -----------------------------
if os.environ.get("DATABASE_URL"):
    # Under ASGI Django runs each request's sync code in a fresh thread, so a persistent
    # (CONN_MAX_AGE) connection is never reused and every request would connect anew. HOL_DB_POOL=1
    # gives the process a psycopg pool that hands connections across threads instead (for web
    # processes; a pool does not survive fork(), so forking processes keep persistent connections).
    _pooled = env_bool("HOL_DB_POOL", False)
    DATABASES = {
        "default": dj_database_url.parse(
            os.environ["DATABASE_URL"],
            conn_max_age=0 if _pooled else env_int("HOL_CONN_MAX_AGE", 60),
            conn_health_checks=not _pooled,
        )
    }
    if _pooled and DATABASES["default"]["ENGINE"].endswith("postgresql"):
        # Connections kept per process: min open, max under load (extra requests wait for one).
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("HOL_DB_POOL_MIN", 1),
            "max_size": env_int("HOL_DB_POOL_MAX", 8),
        }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": HOL_DATA_DIR / "db.sqlite3",
            # IMMEDIATE makes concurrent writers (claims) queue for the lock instead of failing.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
            # The tests' database is a file too, not Django's shared-cache memory database: there a
            # reader meets a concurrent writer's table lock as an error ("database table is
            # locked") where the real file in WAL mode lets it read.
            "TEST": {"NAME": str(HOL_DATA_DIR / "test.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: REDIS_URL or the embedded server on a private unix socket ----------------------------
# The embedded server's socket; hol.embedded_redis.start_if_embedded starts it when REDIS_URL is unset.
HOL_REDIS_SOCKET = HOL_DATA_DIR / "redis.sock"
HOL_EMBEDDED_REDIS = not os.environ.get("REDIS_URL")
if not HOL_EMBEDDED_REDIS:
    REDIS_URL = os.environ["REDIS_URL"]
    CELERY_BROKER_URL = REDIS_URL
    CHANNEL_REDIS_HOST: str = REDIS_URL
else:
    REDIS_URL = f"unix://{HOL_REDIS_SOCKET}"
    CELERY_BROKER_URL = f"redis+socket://{HOL_REDIS_SOCKET}"
    CHANNEL_REDIS_HOST = f"unix://{HOL_REDIS_SOCKET}"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {
            "hosts": [CHANNEL_REDIS_HOST],
            "prefix": os.environ.get("HOL_CHANNEL_PREFIX", "hol"),
            # channels-redis drops group messages silently once a subscriber's channel holds
            # `capacity`; pages also catch up from the database by id, but a roomy channel keeps
            # bursts off that path.
            "capacity": env_int("HOL_CHANNEL_CAPACITY", 5000),
            "expiry": 60,
        },
    }
}
# Counts every process must share (the per-agent approval rate limit) live in Redis, under a
# prefix of their own: a per-process cache would let N web processes allow N times the rate.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": "hol-cache",
    }
}

# --- Celery and Beat ------------------------------------------------------------------------------
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env_bool("HOL_CELERY_EAGER", False)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# Seconds between runs of each housekeeping task; installed into django-celery-beat by bootstrap.
HOL_BEAT_SCHEDULE = {
    "tasks.tasks.requeue_lapsed_work": env_int("HOL_BEAT_LEASE_SECONDS", 15),
    "tasks.tasks.terminate_stale_sessions": env_int("HOL_BEAT_SESSIONS_SECONDS", 60),
    # Seals audit entries a crashed process left pending, then signs the chain head.
    "audit.tasks.record_checkpoint": env_int("HOL_BEAT_AUDIT_CHECKPOINT_SECONDS", 60),
    # Walks the whole chain (seconds for a million entries); the audit page shows the latest run.
    "audit.tasks.verify_chain": env_int("HOL_BEAT_AUDIT_VERIFY_SECONDS", 3600),
    # Pending approvals past expires_at become expired; approvers hear of ones about to expire.
    "approvals.tasks.expire_overdue_approvals": env_int("HOL_BEAT_APPROVALS_EXPIRE_SECONDS", 30),
    "approvals.tasks.warn_expiring_approvals": env_int("HOL_BEAT_APPROVALS_WARN_SECONDS", 60),
}

# --- Auth, API ------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out username or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
LOGIN_URL = "/admin/login/"
# Sign-in throttling (django-axes, on the token endpoint and the admin login): this many failures
# for one username, or from one address, lock it out (429 with Retry-After) for the cool-off.
AXES_FAILURE_LIMIT = env_int("HOL_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = timedelta(seconds=env_int("HOL_LOGIN_COOLOFF_SECONDS", 15 * 60))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_CALLABLE = "hol.auth.lockout_response"
# Failures expire with the cool-off, never on a success: signing in to one's own account from an
# address would otherwise wipe the failures counted there against someone else's.
AXES_RESET_ON_SUCCESS = False
AXES_VERBOSE = False

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "hol.run_scope.RunScopedJWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "hol.run_scope.RunTokenPermission",
    ],
    # JSON only (no NUL characters, bounded nesting), forms for the browsable docs' logins.
    "DEFAULT_PARSER_CLASSES": [
        "hol.api.StorableJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "hol.errors.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SIMPLE_JWT = {
    "ACCESS_TOKEN_LIFETIME": timedelta(seconds=env_int("HOL_JWT_ACCESS_SECONDS", 300)),
    "REFRESH_TOKEN_LIFETIME": timedelta(seconds=env_int("HOL_JWT_REFRESH_SECONDS", 86400)),
    "ROTATE_REFRESH_TOKENS": True,
    "BLACKLIST_AFTER_ROTATION": True,
    "UPDATE_LAST_LOGIN": False,
    # Tokens carry a digest of the password hash, checked on every request: a password change
    # makes the account's access tokens stop working at once (refresh tokens are blacklisted too).
    "CHECK_REVOKE_TOKEN": True,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "HOL — Human Operations Layer API",
    "DESCRIPTION": "The API coding agents use: tasks, workers, the work queue, sessions.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # The async long-poll read of an approval is a plain Django view; this hook documents it.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "approvals.schema.add_approval_long_poll",
    ],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "TaskStatusEnum": "tasks.models.Task.Status",
        "WorkOrderStatusEnum": "tasks.models.WorkOrder.Status",
        "WorkerStatusEnum": "tasks.models.Worker.Status",
        "SessionStatusEnum": "tasks.models.AgentSession.Status",
        "RiskLevelEnum": "approvals.models.RiskLevel",
        "ApprovalStatusEnum": "approvals.models.ApprovalRequest.Status",
    },
}

# --- HOL domain knobs -----------------------------------------------------------------------------
# Repos a task may target: comma-separated prefixes; empty denies every repo (fail closed).
HOL_ALLOWED_REPO_PREFIXES = env_list("HOL_ALLOWED_REPO_PREFIXES")
HOL_INTAKE_ALLOW_NETWORK = env_bool("HOL_INTAKE_ALLOW_NETWORK", False)
HOL_INTAKE_ALLOW_SECRETS = env_bool("HOL_INTAKE_ALLOW_SECRETS", False)
# A claim holds its work order this long; every heartbeat of the worker extends it.
HOL_LEASE_SECONDS = env_int("HOL_LEASE_SECONDS", 60)
# A worker silent this long is marked offline and its work requeued.
HOL_WORKER_TIMEOUT_SECONDS = env_int("HOL_WORKER_TIMEOUT_SECONDS", 90)
# Requeue back-off: base * 2**(retry_count-1) seconds, capped.
HOL_RETRY_BACKOFF_SECONDS = float(os.environ.get("HOL_RETRY_BACKOFF_SECONDS", 10))
HOL_RETRY_BACKOFF_MAX_SECONDS = float(os.environ.get("HOL_RETRY_BACKOFF_MAX_SECONDS", 3600))
HOL_DEFAULT_MAX_RETRIES = env_int("HOL_DEFAULT_MAX_RETRIES", 3)
# Session keep-alive policy.
HOL_SESSION_IDLE_SECONDS = env_int("HOL_SESSION_IDLE_SECONDS", 30 * 60)
HOL_SESSION_MAX_AGE_SECONDS = env_int("HOL_SESSION_MAX_AGE_SECONDS", 60 * 60)
HOL_APPROVAL_POLICIES_FILE = Path(
    os.environ.get("HOL_APPROVAL_POLICIES_FILE", BASE_DIR / "approvals/config/approval-policies.yaml")
)
HOL_RISK_RULES_FILE = Path(
    os.environ.get("HOL_RISK_RULES_FILE", BASE_DIR / "approvals/config/risk-assessment-rules.yaml")
)
# Longest an agent may long-poll GET /api/v1/approvals/{id}?wait=N (N is capped to this).
HOL_APPROVAL_WAIT_MAX_SECONDS = env_int("HOL_APPROVAL_WAIT_MAX_SECONDS", 60)
# Approvers are told this long before a pending request expires.
HOL_APPROVAL_EXPIRY_WARNING_SECONDS = env_int("HOL_APPROVAL_EXPIRY_WARNING_SECONDS", 300)
# Slack-compatible incoming webhook for approval notifications on levels whose channels name
# `webhook` (empty: none), and how long one POST may take.
HOL_APPROVAL_WEBHOOK_URL = os.environ.get("HOL_APPROVAL_WEBHOOK_URL", "")
HOL_APPROVAL_WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("HOL_APPROVAL_WEBHOOK_TIMEOUT_SECONDS", 3))
# Approval requests one account may make per minute, asked directly or opened by submitting a task
# whose action is high or critical risk (429 with Retry-After beyond).
HOL_APPROVAL_RATE_PER_MINUTE = env_int("HOL_APPROVAL_RATE_PER_MINUTE", 30)
# How often an agent long-polling an approval linked to its work order heartbeats its worker.
HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS = env_int("HOL_APPROVAL_WAIT_HEARTBEAT_SECONDS", 10)
# Bearer token a Prometheus scraper presents at /metrics (empty: staff sessions only).
HOL_METRICS_TOKEN = os.environ.get("HOL_METRICS_TOKEN", "")
# Where notification email goes: the console unless a real backend (SMTP settings) is configured.
EMAIL_BACKEND = os.environ.get("HOL_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("HOL_FROM_EMAIL", "hol@localhost")

# Audit entries are sealed into the hash chain by a background thread per process this long after
# a commit kicks it (batching many commits into one sealing round); 0 seals inline after each commit.
HOL_AUDIT_SEAL_DELAY_SECONDS = float(os.environ.get("HOL_AUDIT_SEAL_DELAY_SECONDS", 0.05))
# Signs audit checkpoints (HMAC-SHA256). Keep it apart from the database: whoever holds it can
# sign a truncated chain. Default: a random key of its own in the data dir, never derived.
HOL_AUDIT_CHECKPOINT_KEY = env_secret("HOL_AUDIT_CHECKPOINT_KEY", HOL_DATA_DIR, datadir.CHECKPOINT_KEY_FILE)

# --- Security (`check --deploy` is clean with the README's production settings) ------------------
# HOL_HTTPS=1: HOL is reached over HTTPS only. Redirects plain HTTP, marks cookies secure, sends HSTS.
HOL_HTTPS = env_bool("HOL_HTTPS", False)
SECURE_SSL_REDIRECT = HOL_HTTPS
SESSION_COOKIE_SECURE = HOL_HTTPS
CSRF_COOKIE_SECURE = HOL_HTTPS
# How long browsers must keep to HTTPS (with HOL_HTTPS=1), subdomains and preload list included.
SECURE_HSTS_SECONDS = env_int("HOL_HSTS_SECONDS", 31536000) if HOL_HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HOL_HTTPS
SECURE_HSTS_PRELOAD = HOL_HTTPS
# HOL_TRUST_PROXY=1: HOL sits behind a reverse proxy that sets X-Forwarded-Proto/-For. Only then are
# those headers believed (here, and by daphne's --proxy-headers in the launcher); any client can
# send them.
HOL_TRUST_PROXY = env_bool("HOL_TRUST_PROXY", False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HOL_TRUST_PROXY else None
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = HOL_DATA_DIR / "static"
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("HOL_LOG_LEVEL", "INFO")},
}

# --- pages (sign-in, Content-Security-Policy, page size), agent runs and task callbacks ---
from hol.settings_pages import *  # noqa: E402, F403
from hol.settings_runs import *  # noqa: E402, F403
