"""Log lines: tokens redacted, and JSON lines carrying each job's fields from a real worker."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from simulator import stack
from worker.core.logs import RedactingFilter, redact

from .conftest import Isolated


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


@pytest.mark.integration
@pytest.mark.slow
def test_json_logs_carry_job_fields_and_no_token(isolated: Isolated) -> None:
    isolated.import_accounts(2)
    isolated.sim.script("acct-000002", ["missing-200"])
    worker = isolated.worker("j1", VOICEMAIL_LOG_JSON="true")
    ok = isolated.cli_json("update", "acct-000001", "--send", "--email", "j@acme.ru", "--wait")
    failed = isolated.cli_json("get", "acct-000002", "--wait")
    assert (ok["state"], failed["state"]) == ("SUCCESS", "FAILURE")

    def job_lines() -> dict[str, dict[str, Any]]:
        found = {}
        for line in worker.log().splitlines():
            if line.startswith("{"):
                record = json.loads(line)  # every line of ours is one JSON object
                if "outcome" in record:
                    found[record["job_id"]] = record
        return found

    stack.wait_until(lambda: {ok["id"], failed["id"]} <= set(job_lines()), 10, "the log lines")
    lines = job_lines()
    assert lines[ok["id"]]["outcome"] == "ok"
    assert lines[ok["id"]]["account"] == "acct-000001"
    assert lines[ok["id"]]["attempt"] == 1
    assert isinstance(lines[ok["id"]]["latency_ms"], float)
    assert lines[failed["id"]]["outcome"] == "failed"
    assert "UserNotFound" in lines[failed["id"]]["message"]
    assert "tok-acct-" not in worker.log()


def test_json_log_times_are_iso_8601_in_utc() -> None:
    import datetime as dt
    import json
    import logging

    from worker.core.logs import JsonFormatter

    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    record.created = 1_700_000_000.25
    line = json.loads(JsonFormatter().format(record))
    assert line["ts"] == "2023-11-14T22:13:20.250Z"
    assert dt.datetime.fromisoformat(line["ts"]).utcoffset() == dt.timedelta(0)
