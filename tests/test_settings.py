from __future__ import annotations

import pytest

from worker.core.errors import ConfigError
from worker.core.settings import load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "PLUSOFON_API_URL", "VOICEMAIL_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.broker_url == settings.result_backend == settings.redis_url
    assert settings.api_url == "https://restapi.plusofon.ru"
    assert settings.client_id == 10553
    assert settings.result_expires == 86_400


def test_celery_urls_override_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://h:1/0")
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://b:2/1")
    settings = load_settings()
    assert settings.broker_url == "redis://b:2/1"
    assert settings.result_backend == "redis://h:1/0"


@pytest.mark.parametrize(
    ("name", "value", "needle"),
    [
        ("PLUSOFON_CLIENT_ID", "abc", "PLUSOFON_CLIENT_ID"),
        ("REDIS_URL", "http://nope", "REDIS_URL"),
        ("PLUSOFON_API_URL", "ftp://x", "PLUSOFON_API_URL"),
        ("VOICEMAIL_READ_TIMEOUT", "-1", "VOICEMAIL_READ_TIMEOUT"),
        ("VOICEMAIL_RETRY_ATTEMPTS", "0", "VOICEMAIL_RETRY_ATTEMPTS"),
        ("VOICEMAIL_RESULT_EXPIRES", "soon", "VOICEMAIL_RESULT_EXPIRES"),
        ("VOICEMAIL_ORDERING_TTL", "10", "VOICEMAIL_ORDERING_TTL"),
        ("VOICEMAIL_METRICS_BASIC_AUTH", "prom", "VOICEMAIL_METRICS_BASIC_AUTH"),
        ("VOICEMAIL_METRICS_BASIC_AUTH", "prom:pw,:pw2", "VOICEMAIL_METRICS_BASIC_AUTH"),
    ],
)
def test_bad_variable_is_named(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=needle) as info:
        load_settings()
    assert "\n" not in str(info.value)


def test_empty_variables_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEMAIL_SECRET_KEY", "")
    monkeypatch.setenv("PLUSOFON_TOKEN", "")
    settings = load_settings()
    assert settings.secret_key is None
    assert settings.token is None


def test_short_secret_key_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICEMAIL_SECRET_KEY", "too-short-secret")
    with pytest.raises(ConfigError, match=r"VOICEMAIL_SECRET_KEY: .*at least 32") as info:
        load_settings()
    assert "too-short-secret" not in str(info.value)
