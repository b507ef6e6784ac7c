"""One typed settings object, read from the environment once per process.

A bad value stops start-up with a one-line `ConfigError` naming the variable.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Annotated, Any

import pydantic
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from . import constants as C
from .errors import ConfigError, InputError
from .validation import check_token

PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


def env(variable: str, default: Any = None, **limits: Any) -> Any:
    """A setting read from the environment variable `variable`, within `limits`
    (pydantic's `ge`, `le`, ...), else `default`."""
    return Field(default, validation_alias=variable, **limits)


def _long_enough(key: str) -> str:
    if len(key) < C.SECRET_KEY_MIN_LENGTH:
        raise ValueError(f"must be at least {C.SECRET_KEY_MIN_LENGTH} characters")
    return key


def _header_safe(token: str) -> str:
    try:  # stripped: a trailing newline would reach the Authorization header
        return check_token(token)
    except InputError as exc:
        raise ValueError(str(exc)) from None


def _keys_long_enough(raw: str) -> str:
    if any(len(k.strip()) < C.SECRET_KEY_MIN_LENGTH for k in raw.split(",") if k.strip()):
        raise ValueError(f"every key must be at least {C.SECRET_KEY_MIN_LENGTH} characters")
    return raw


def _user_password_pairs(raw: str) -> str:
    for pair in raw.split(","):
        user, colon, password = pair.strip().partition(":")
        if not (user and colon and password):
            raise ValueError("must be user:password, comma-separated for several")
    return raw


_SECRET_CHECKS: Mapping[str, Callable[[str], str]] = MappingProxyType(
    {
        "secret_key": _long_enough,
        "token": _header_safe,
        "old_secret_keys_raw": _keys_long_enough,
        "metrics_basic_auth": _user_password_pairs,
    }
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        case_sensitive=True, extra="ignore", populate_by_name=False, frozen=True
    )

    redis_url: str = env("REDIS_URL", C.DEFAULT_REDIS_URL)
    broker_url_override: str | None = env("CELERY_BROKER_URL")
    result_backend_override: str | None = env("CELERY_RESULT_BACKEND")

    api_url: str = env("PLUSOFON_API_URL", C.DEFAULT_API_URL)
    client_id: int = env("PLUSOFON_CLIENT_ID", C.DEFAULT_CLIENT_ID, ge=0)
    token: SecretStr | None = env("PLUSOFON_TOKEN")
    secret_key: SecretStr | None = env("VOICEMAIL_SECRET_KEY")
    # Comma-separated keys that still open tokens during a rotation (see rotate-key).
    old_secret_keys_raw: SecretStr | None = env("VOICEMAIL_OLD_SECRET_KEYS")
    # user:password[,user:password...] that `voicemail metrics` asks for (unset: open).
    metrics_basic_auth: SecretStr | None = env("VOICEMAIL_METRICS_BASIC_AUTH")

    connect_timeout: PositiveFloat = env("VOICEMAIL_CONNECT_TIMEOUT", C.DEFAULT_CONNECT_TIMEOUT)
    read_timeout: PositiveFloat = env("VOICEMAIL_READ_TIMEOUT", C.DEFAULT_READ_TIMEOUT)
    max_connections: int = env("VOICEMAIL_MAX_CONNECTIONS", C.DEFAULT_MAX_CONNECTIONS, ge=1)

    retry_attempts: int = env("VOICEMAIL_RETRY_ATTEMPTS", C.DEFAULT_RETRY_ATTEMPTS, ge=1, le=20)
    retry_base_delay: NonNegativeFloat = env(
        "VOICEMAIL_RETRY_BASE_DELAY", C.DEFAULT_RETRY_BASE_DELAY
    )
    retry_max_delay: NonNegativeFloat = env("VOICEMAIL_RETRY_MAX_DELAY", C.DEFAULT_RETRY_MAX_DELAY)
    retry_after_max: NonNegativeFloat = env("VOICEMAIL_RETRY_AFTER_MAX", C.DEFAULT_RETRY_AFTER_MAX)
    requeue_max: int = env("VOICEMAIL_REQUEUE_MAX", C.DEFAULT_REQUEUE_MAX, ge=0, le=100)
    requeue_base_delay: NonNegativeFloat = env(
        "VOICEMAIL_REQUEUE_BASE_DELAY", C.DEFAULT_REQUEUE_BASE_DELAY
    )
    requeue_max_delay: NonNegativeFloat = env(
        "VOICEMAIL_REQUEUE_MAX_DELAY", C.DEFAULT_REQUEUE_MAX_DELAY
    )
    rate_limit: PositiveFloat | None = env("VOICEMAIL_RATE_LIMIT")
    token_rate_limit: PositiveFloat | None = env("VOICEMAIL_TOKEN_RATE_LIMIT")
    rate_limited_max: int = env(
        "VOICEMAIL_RATE_LIMITED_MAX", C.DEFAULT_RATE_LIMITED_MAX, ge=1, le=1000
    )
    bulk_chunk_size: int = env(
        "VOICEMAIL_BULK_CHUNK_SIZE", C.DEFAULT_BULK_CHUNK_SIZE, ge=1, le=100_000
    )
    # A bulk with more rows is refused (docs/bulk.md#limits).
    bulk_max_rows: int = env(
        "VOICEMAIL_BULK_MAX_ROWS", C.DEFAULT_BULK_MAX_ROWS, ge=1, le=1_000_000_000
    )
    # Comma-separated fnmatch globs of the tasks and queues `--notify` may name (unset: any).
    notify_tasks: str | None = env("VOICEMAIL_NOTIFY_TASKS")
    notify_queues: str | None = env("VOICEMAIL_NOTIFY_QUEUES")
    bulk_in_flight: int = env("VOICEMAIL_BULK_IN_FLIGHT", C.DEFAULT_BULK_IN_FLIGHT, ge=1, le=10_000)
    bulk_processes: int | None = env("VOICEMAIL_BULK_PROCESSES", ge=0, le=64)
    breaker_threshold: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = env(
        "VOICEMAIL_BREAKER_THRESHOLD", C.DEFAULT_BREAKER_THRESHOLD
    )
    breaker_min_calls: int = env("VOICEMAIL_BREAKER_MIN_CALLS", C.DEFAULT_BREAKER_MIN_CALLS, ge=0)
    breaker_window: int = env("VOICEMAIL_BREAKER_WINDOW", C.DEFAULT_BREAKER_WINDOW, ge=1, le=3600)
    breaker_cooldown: PositiveFloat = env("VOICEMAIL_BREAKER_COOLDOWN", C.DEFAULT_BREAKER_COOLDOWN)
    log_json: bool = env("VOICEMAIL_LOG_JSON", False)
    sentinel_master: str = env("VOICEMAIL_SENTINEL_MASTER", "mymaster")
    visibility_timeout: int = env(
        "VOICEMAIL_VISIBILITY_TIMEOUT", C.DEFAULT_VISIBILITY_TIMEOUT, ge=2, le=86_400
    )
    result_expires: int = env("VOICEMAIL_RESULT_EXPIRES", C.DEFAULT_RESULT_EXPIRES, ge=60)
    # How long `voicemail bulk plan` keeps a plan for `bulk apply`, from when it is made.
    plan_ttl: int = env("VOICEMAIL_PLAN_TTL", C.DEFAULT_PLAN_TTL, ge=1)
    ordering_ttl: int = env("VOICEMAIL_ORDERING_TTL", C.DEFAULT_ORDERING_TTL, ge=60)
    dead_letter_days: int = env("VOICEMAIL_DEAD_LETTER_DAYS", C.DEFAULT_DEAD_LETTER_DAYS, ge=1)
    # The journal of changes (worker.coordination.journal): on/off, days kept, and where.
    journal: bool = env("VOICEMAIL_JOURNAL", True)
    journal_days: int = env("VOICEMAIL_JOURNAL_DAYS", 90, ge=1)
    journal_url: str | None = env("VOICEMAIL_JOURNAL_URL")
    # A bulk of more rows than this is refused without a reason (unset: never refused).
    reason_required_rows: int | None = env("VOICEMAIL_REASON_REQUIRED_ROWS", ge=0)
    # Seconds after an ambiguous answer that the account is read back (readback.py): how
    # long the vendor may take to apply a request whose answer never came.
    verify_after: float = env("VOICEMAIL_VERIFY_AFTER", C.DEFAULT_VERIFY_AFTER, ge=1, le=3600)
    # Start on a Redis whose maxmemory-policy may evict keys (worker.core.redis_server).
    allow_eviction: bool = env("VOICEMAIL_ALLOW_EVICTION", False)

    @field_validator("journal", "journal_url", mode="before")
    @classmethod
    def _journal_blank_is_default(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        # an empty VOICEMAIL_JOURNAL (as compose passes it) is the default: on
        if isinstance(value, str) and not value.strip():
            return True if info.field_name == "journal" else None
        return value.strip() if isinstance(value, str) else value

    @field_validator("journal_url")
    @classmethod
    def _postgres_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("must be a postgresql:// or postgres:// URL")
        return value

    @field_validator(
        "rate_limit",
        "token_rate_limit",
        "bulk_processes",
        "reason_required_rows",
        "notify_tasks",
        "notify_queues",
        "broker_url_override",
        "result_backend_override",
        mode="before",
    )
    @classmethod
    def _blank_is_unset(cls, value: Any) -> Any:
        # compose and .env files pass unset variables as empty strings
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url", "broker_url_override", "result_backend_override")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(
            ("redis://", "rediss://", "unix://", "sentinel://")
        ):
            raise ValueError("must be a redis://, rediss://, unix:// or sentinel:// URL")
        return value

    @field_validator("api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")

    @field_validator("secret_key", "token", "old_secret_keys_raw", "metrics_basic_auth")
    @classmethod
    def _secret(cls, value: SecretStr | None, info: pydantic.ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None  # an empty variable (as compose passes it) means unset
        check = _SECRET_CHECKS[str(info.field_name)]
        return SecretStr(check(value.get_secret_value()))

    def metrics_users(self) -> list[tuple[str, str]]:
        if self.metrics_basic_auth is None:
            return []
        pairs = self.metrics_basic_auth.get_secret_value().split(",")
        return [(u, p) for u, _, p in (pair.strip().partition(":") for pair in pairs)]

    def old_secret_keys(self) -> list[str]:
        if self.old_secret_keys_raw is None:
            return []
        raw = self.old_secret_keys_raw.get_secret_value()
        return [k.strip() for k in raw.split(",") if k.strip()]

    @property
    def broker_url(self) -> str:
        return self.broker_url_override or self.redis_url

    @property
    def result_backend(self) -> str:
        return self.result_backend_override or self.redis_url


_SECRET_VARIABLES = frozenset(
    {
        "VOICEMAIL_SECRET_KEY",
        "PLUSOFON_TOKEN",
        "VOICEMAIL_OLD_SECRET_KEYS",
        "VOICEMAIL_JOURNAL_URL",  # may carry a password
        "VOICEMAIL_METRICS_BASIC_AUTH",
    }
)


def _explain(error: pydantic.ValidationError) -> str:
    parts = []
    for item in error.errors():
        name = ".".join(str(p) for p in item["loc"]) or "environment"
        message = item["msg"].removeprefix("Value error, ")
        if name in _SECRET_VARIABLES or "input" not in item:
            parts.append(f"{name}: {message}")
        else:
            parts.append(f"{name}: {message} (got {item['input']!r})")
    return "; ".join(parts)


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; raise `ConfigError` naming each bad variable."""
    try:
        return Settings(**overrides)
    except pydantic.ValidationError as exc:
        raise ConfigError(f"bad configuration: {_explain(exc)}") from None


@functools.cache
def get_settings() -> Settings:
    return load_settings()
