"""Settings for ShiTu Platform: one module, every value from the environment with a safe local default.

With no DATABASE_URL / REDIS_URL set, the defaults point at the embedded stack that
`python manage.py shitu up` starts (PostgreSQL 18 + pgvector and Redis on loopback).
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env_str(name, default).split(",") if item.strip()]


VAR_DIR = Path(env_str("SHITU_VAR_DIR", str(BASE_DIR / "var"))).resolve()


def _local_secret_key() -> str:
    """A random key kept under var/ so sessions survive restarts of the embedded stack."""
    key_file = VAR_DIR / "secret_key"
    if key_file.exists():
        return key_file.read_text().strip()
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    key_file.write_text(key)
    key_file.chmod(0o600)
    return key


DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY") or _local_secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

# --- embedded stack (used only when DATABASE_URL / REDIS_URL are unset) ---
EMBEDDED_PG_PORT = env_int("SHITU_EMBEDDED_PG_PORT", 55432)
EMBEDDED_REDIS_PORT = env_int("SHITU_EMBEDDED_REDIS_PORT", 56379)
EMBEDDED_DATABASE_URL = f"postgres://shitu:shitu@127.0.0.1:{EMBEDDED_PG_PORT}/shitu"
EMBEDDED_REDIS_URL = f"redis://127.0.0.1:{EMBEDDED_REDIS_PORT}/0"
USES_EMBEDDED_DATABASE = not env_str("DATABASE_URL")
USES_EMBEDDED_REDIS = not env_str("REDIS_URL")

DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL") or EMBEDDED_DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Row-level security scope of connections outside a request (workers, sweeps, commands): "system" sees every
# tenant's rows, "none" none. Requests always start in "none" and narrow to their tenant (tenancy/rls.py).
SHITU_DB_DEFAULT_SCOPE = env_str("SHITU_DB_DEFAULT_SCOPE", "system")

REDIS_URL = env_str("REDIS_URL") or EMBEDDED_REDIS_URL

# Rate-limit counters must be shared by all web processes: Redis, not per-process memory.
def _redis_db(url: str, db: int) -> str:
    """The same Redis server, another database: clearing the cache must never flush Celery's queues."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


CACHE_URL = env_str("CACHE_URL") or _redis_db(REDIS_URL, 1)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": CACHE_URL,
        "KEY_PREFIX": "shitu",
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI / Redoc as pinned static files: the docs work offline
    "axes",
    "shitu_platform",
    "shitu_platform.tenancy",
    "modelhub",
    "recognition",
    "galleries",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "shitu_platform.middleware.RejectNulCharactersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "shitu_platform.middleware.RowLevelSecurityMiddleware",  # after static files (no query), before any tenant row
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "shitu_platform.middleware.TenantTimeZoneMiddleware",  # after auth: the zone is the session user's tenant's
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: login throttling
]

# Login throttling (django-axes): 10 failures per username + IP lock that pair out for an hour; counted in Redis.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("SHITU_LOGIN_FAILURE_LIMIT", 10)
AXES_COOLOFF_TIME = 1
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_RESET_ON_SUCCESS = True

ROOT_URLCONF = "shitu_platform.urls"
WSGI_APPLICATION = "shitu_platform.wsgi.application"

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
                "shitu_platform.tenancy.context_processors.tenant",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard:home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- security: HTTPS-only cookies and HSTS when served behind TLS (compose/production) ---
SHITU_HTTPS = env_bool("SHITU_HTTPS", False)
SESSION_COOKIE_SECURE = SHITU_HTTPS
CSRF_COOKIE_SECURE = SHITU_HTTPS
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SECURE_HSTS_SECONDS = 31536000 if SHITU_HTTPS else 0
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SHITU_HTTPS else None
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("SHITU_MAX_REQUEST_BYTES", 25 * 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# --- object storage (see shitu_platform/storage) ---
OBJECT_STORE = {
    "STORAGE_BACKEND": env_str("STORAGE_BACKEND", "filesystem"),
    "STORAGE_ROOT": env_str("STORAGE_ROOT", str(VAR_DIR / "objects")),
    "STORAGE_URL_SECRET": env_str("STORAGE_URL_SECRET") or SECRET_KEY,
    "S3_ENDPOINT": env_str("S3_ENDPOINT", "127.0.0.1:9000"),
    "S3_ACCESS_KEY": env_str("S3_ACCESS_KEY"),
    "S3_SECRET_KEY": env_str("S3_SECRET_KEY"),
    "S3_BUCKET": env_str("S3_BUCKET", "shitu"),
    "S3_SECURE": env_str("S3_SECURE", "false"),
    "S3_REGION": env_str("S3_REGION", ""),
}

# --- image intake limits (every upload path; see recognition/engine/imageio.py) ---
SHITU_MAX_IMAGE_BYTES = env_int("SHITU_MAX_IMAGE_BYTES", 20 * 1024 * 1024)
SHITU_MAX_IMAGE_PIXELS = env_int("SHITU_MAX_IMAGE_PIXELS", 40_000_000)
SHITU_IMPORT_BATCH_SIZE = env_int("SHITU_IMPORT_BATCH_SIZE", 16)  # images embedded per extractor call
SHITU_MAX_IMPORT_UPLOAD_BYTES = env_int("SHITU_MAX_IMPORT_UPLOAD_BYTES", 512 * 1024 * 1024)  # the zip as sent
SHITU_MAX_IMPORT_BYTES = env_int("SHITU_MAX_IMPORT_BYTES", 2 * 1024 * 1024 * 1024)  # unpacked size of one import zip

# --- models (PP-ShiTuV2 inference models; see recognition/engine/manifest.py and install.py) ---
MODELS_ROOT = Path(env_str("SHITU_MODELS_ROOT", str(VAR_DIR / "models")))
ENGINE_THREADS = env_int("SHITU_ENGINE_THREADS", 2)
SHITU_EXTRACTOR = env_str("SHITU_EXTRACTOR")  # name or name@version; empty: newest installed
SHITU_DETECTOR = env_str("SHITU_DETECTOR")
SHITU_RECOGNITION_TIMEOUT = float(env_str("SHITU_RECOGNITION_TIMEOUT", "20"))  # sync API waits this long, then 202
SHITU_REVIEW_MARGIN = float(env_str("SHITU_REVIEW_MARGIN", "0.02"))  # best minus runner-up product score below this: review
SHITU_WEBHOOK_ALLOW_PRIVATE = env_bool("SHITU_WEBHOOK_ALLOW_PRIVATE", False)
# Fine-tuning on CPU: a small net unless the base model says otherwise (its train_config.json wins).
SHITU_FINETUNE_IMAGE_SIZE = env_int("SHITU_FINETUNE_IMAGE_SIZE", 128)
SHITU_FINETUNE_BACKBONE_SCALE = float(env_str("SHITU_FINETUNE_BACKBONE_SCALE", "0.5"))
SHITU_FINETUNE_BACKBONE_DEPTHS = [int(v) for v in env_list("SHITU_FINETUNE_BACKBONE_DEPTHS", "2,2,6,2")]
SHITU_FINETUNE_P = env_int("SHITU_FINETUNE_P", 8)
SHITU_FINETUNE_K = env_int("SHITU_FINETUNE_K", 4)
# Fine-tuning LR (Momentum, batch P x K = 32): PaddleClas' 0.06 @ 2048 scaled to 32 is 0.0009, which barely moved
# the shipped extractor in 140 steps on 186 photos; 0.01 raised held-out mAP there (README, Fine-tuning).
SHITU_FINETUNE_LR = float(env_str("SHITU_FINETUNE_LR", "0.01"))
SHITU_FINETUNE_CHECKPOINT_STEPS = env_int("SHITU_FINETUNE_CHECKPOINT_STEPS", 20)
SHITU_FINETUNE_MAX_STEPS = env_int("SHITU_FINETUNE_MAX_STEPS", 0)  # 0: no cap (epochs decide)
SHITU_FINETUNE_MAX_EPOCHS = env_int("SHITU_FINETUNE_MAX_EPOCHS", 200)
SHITU_LOCAL_FEATURES = env_int("SHITU_LOCAL_FEATURES", 500)  # RootSIFT keypoints per reference image (verification)
SHITU_LOCAL_FEATURES_CACHE = env_int("SHITU_LOCAL_FEATURES_CACHE", 4000)  # reference images' features kept per worker (~66 KB each)
SHITU_FINETUNE_VIEWS = env_int("SHITU_FINETUNE_VIEWS", 8)  # cached views per photo (fast and full modes of a pretrained base)
SHITU_MAX_LOADED_MODELS = env_int("SHITU_MAX_LOADED_MODELS", 4)  # tenant models kept in a worker's memory
SHITU_INDEX_TYPE = env_str("SHITU_INDEX_TYPE", "auto")  # auto | Flat | HNSW32 | IVF

# --- Celery: job state lives in the database; the broker only carries ids ---
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_EXPIRES = 3600
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 6 * 3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- REST API ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "shitu_platform.tenancy.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["shitu_platform.tenancy.permissions.HasTenantRole"],
    "DEFAULT_PAGINATION_CLASS": "shitu_platform.parsers.BoundedLimitOffsetPagination",
    "DEFAULT_PARSER_CLASSES": [
        "shitu_platform.parsers.SafeJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "shitu_platform.errors.api_exception_handler",
    "DEFAULT_THROTTLE_CLASSES": ["shitu_platform.tenancy.throttling.TenantRateThrottle"],
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ShiTu Platform API",
    "DESCRIPTION": "Product recognition (PP-ShiTuV2) for retailers: galleries, recognition, fine-tuning.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # request bodies get their own components (no read-only fields), so generated clients can build them
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "GET_LIB_DOC_EXCLUDES": "shitu_platform.openapi.lib_doc_excludes",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "shitu_platform.openapi.postprocess_errors_and_descriptions",
    ],
    "ENUM_NAME_OVERRIDES": {
        "RoleEnum": "shitu_platform.tenancy.models.Role",
        "ApiKeyRoleEnum": [("admin", "Admin"), ("member", "Member"), ("viewer", "Viewer")],
    },
}

# API keys: updating last_used_at on every request would turn reads into writes.
API_KEY_LAST_USED_RESOLUTION_SECONDS = 60

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}, "faiss.loader": {"level": "WARNING"},
                "axes": {"level": "WARNING"}},
}
