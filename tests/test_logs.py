from __future__ import annotations

import logging

import pytest

from worker.core.logs import RedactingFilter, redact


@pytest.mark.parametrize(
    "line",
    [
        "Authorization: Bearer abc.def-123",
        "headers={'Authorization': 'Bearer abc.def-123'}",
        '{"authorization": "Bearer abc.def-123"}',
        "sending bearer abc.def-123 now",
        "Authorization=abc.def-123",
    ],
)
def test_redact(line: str) -> None:
    cleaned = redact(line)
    assert "abc.def-123" not in cleaned
    assert "[REDACTED]" in cleaned


def test_filter_rewrites_records(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.redaction")
    handler = logging.Handler()
    records: list[logging.LogRecord] = []
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("headers %s", {"Authorization": "Bearer sekrit-token"})
    finally:
        logger.removeHandler(handler)
    assert "sekrit-token" not in records[0].getMessage()
