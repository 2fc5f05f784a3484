"""HOL settings. Every knob is read from the environment and has an embedded default.

With no DATABASE_URL / REDIS_URL set, HOL runs on a SQLite file and a Redis server it starts
itself (SPEC §2), both under HOL_DATA_DIR.
"""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Where the embedded database, Redis socket and traces live when nothing else is configured.
HOL_DATA_DIR = Path(os.environ.get("HOL_DATA_DIR", BASE_DIR / ".hol")).resolve()

DEBUG = env_bool("HOL_DEBUG", True)
_DEV_SECRET = "hol-dev-only-secret-key-change-me"  # noqa: S105 - refused below when DEBUG is off
SECRET_KEY = os.environ.get("HOL_SECRET_KEY", _DEV_SECRET)
if not DEBUG and SECRET_KEY == _DEV_SECRET:
    raise ImproperlyConfigured("HOL_SECRET_KEY must be set when HOL_DEBUG is off.")

ALLOWED_HOSTS = env_list("HOL_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("HOL_CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_simplejwt.token_blacklist",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI assets served locally, no CDN
    "django_filters",
    "guardian",
    "channels",
    "django_celery_beat",
    "audit",
    "tasks",
    "approvals",
    "chat",
    "notifications",
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
    HOL_DATA_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": HOL_DATA_DIR / "db.sqlite3",
            # IMMEDIATE makes concurrent writers (claims) queue for the lock instead of failing.
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30, "init_command": "PRAGMA journal_mode=WAL;"},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: REDIS_URL or the embedded server on a private unix socket ----------------------------
if os.environ.get("REDIS_URL"):
    REDIS_URL = os.environ["REDIS_URL"]
    CELERY_BROKER_URL = REDIS_URL
    CHANNEL_REDIS_HOST: str = REDIS_URL
else:
    from hol.embedded_redis import ensure_running

    HOL_REDIS_SOCKET = ensure_running(HOL_DATA_DIR / "redis.sock")
    REDIS_URL = f"unix://{HOL_REDIS_SOCKET}"
    CELERY_BROKER_URL = f"redis+socket://{HOL_REDIS_SOCKET}"
    CHANNEL_REDIS_HOST = f"unix://{HOL_REDIS_SOCKET}"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [CHANNEL_REDIS_HOST], "prefix": os.environ.get("HOL_CHANNEL_PREFIX", "hol")},
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
    # Seals audit entries a crashed process left pending, then signs the chain head (SPEC §8).
    "audit.tasks.record_checkpoint": env_int("HOL_BEAT_AUDIT_CHECKPOINT_SECONDS", 60),
    # Pending approvals past expires_at become expired; approvers hear of ones about to expire.
    "approvals.tasks.expire_overdue_approvals": env_int("HOL_BEAT_APPROVALS_EXPIRE_SECONDS", 30),
    "approvals.tasks.warn_expiring_approvals": env_int("HOL_BEAT_APPROVALS_WARN_SECONDS", 60),
}

# --- Auth, API ------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
LOGIN_URL = "/admin/login/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
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
HOL_ALLOWED_REPO_PREFIXES = env_list("HOL_ALLOWED_REPO_PREFIXES", "https://github.com/,git@github.com:")
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
# Session keep-alive policy (SPEC §3.4).
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
# Where notification email goes: the console unless a real backend (SMTP settings) is configured.
EMAIL_BACKEND = os.environ.get("HOL_EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("HOL_FROM_EMAIL", "hol@localhost")

# Signs audit checkpoints (HMAC-SHA256). Keep it apart from the database: whoever holds it can
# sign a truncated chain. Default: derived from SECRET_KEY.
# Audit entries are sealed into the hash chain by a background thread per process this long after
# a commit kicks it (batching many commits into one sealing round); 0 seals inline after each commit.
HOL_AUDIT_SEAL_DELAY_SECONDS = float(os.environ.get("HOL_AUDIT_SEAL_DELAY_SECONDS", 0.05))
HOL_AUDIT_CHECKPOINT_KEY = (
    os.environ.get("HOL_AUDIT_CHECKPOINT_KEY")
    or hashlib.sha256(f"hol-audit-checkpoint:{SECRET_KEY}".encode()).hexdigest()
)

# --- Security (check --deploy clean when HOL_DEBUG=0 behind TLS) ---------------------------------
SECURE_SSL_REDIRECT = env_bool("HOL_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env_int("HOL_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = HOL_DATA_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("HOL_LOG_LEVEL", "INFO")},
}

# --- pages and live channels ---
INSTALLED_APPS += ["django.contrib.humanize"]  # times in words ("3 minutes ago")
# The Content-Security-Policy goes on every response.
MIDDLEWARE.insert(MIDDLEWARE.index("django.middleware.security.SecurityMiddleware") + 1, "csp.middleware.CSPMiddleware")
TEMPLATES[0]["OPTIONS"]["context_processors"].append("hol.pages.nav_context")
# People sign in on HOL's own page; agents' JWTs never open pages.
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"
# No inline script or style anywhere in HOL's pages: text an agent smuggles in cannot run. The
# admin and the Swagger UI ship inline code of their own, so they are left out.
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/admin/", "/api/docs"],
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    },
}
# channels-redis drops group messages silently once a subscriber's channel holds `capacity`;
# pages also catch up from the database by id, but a roomy channel keeps bursts off that path.
CHANNEL_LAYERS["default"]["CONFIG"]["capacity"] = env_int("HOL_CHANNEL_CAPACITY", 5000)
CHANNEL_LAYERS["default"]["CONFIG"]["expiry"] = 60
# HOL's own stylesheet and script (static/hol/), served by whitenoise.
STATICFILES_DIRS = [BASE_DIR / "static"]
# Tasks per page on the task list.
HOL_PAGE_SIZE = env_int("HOL_PAGE_SIZE", 50)
