"""The result backend: no traceback stored, and a failure's dead letter written first."""

from __future__ import annotations

import uuid
from typing import Any

import fakeredis
import pytest
import redis
from celery import Celery
from celery.app.task import Context

from worker.queue import backend, deadletter


@pytest.fixture
def results(redis_url: str) -> Any:
    app = Celery("backend-test", backend=backend.backend_url(redis_url))
    return app.backend


def test_a_failure_is_dead_lettered_before_it_is_visible(
    results: Any, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = str(uuid.uuid4())
    real = redis.Redis.from_url(redis_url)
    visible_when_lettered: list[int] = []

    class Store(fakeredis.FakeRedis):  # dead letters live apart from results (REDIS_URL)
        def pipeline(self, *args: Any, **kwargs: Any) -> Any:
            visible_when_lettered.append(real.exists(f"celery-task-meta-{job}"))
            return super().pipeline(*args, **kwargs)

    store = Store()
    monkeypatch.setattr(backend, "dead_letter_store", lambda: store)
    request = Context(task="voicemail.get", args=["acme"], kwargs={}, retries=2, id=job)
    results.store_result(
        job, ValueError("boom"), "FAILURE", traceback="secret paths", request=request
    )

    assert visible_when_lettered == [0]
    letter = deadletter.get(store, job)
    assert letter is not None
    assert (letter.task, letter.args, letter.retries) == ("voicemail.get", ["acme"], 2)
    assert letter.error["reason"] == "ValueError: boom"
    assert results.get_task_meta(job)["status"] == "FAILURE"
    assert results.get_task_meta(job)["traceback"] is None
    real.delete(f"celery-task-meta-{job}")


def test_other_tasks_and_other_states_leave_no_letter(
    results: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = fakeredis.FakeRedis()
    monkeypatch.setattr(backend, "dead_letter_store", lambda: store)
    job = str(uuid.uuid4())
    foreign = Context(task="billing.charge", args=[], kwargs={}, id=job)
    results.store_result(job, ValueError("x"), "FAILURE", request=foreign)
    ours = Context(task="voicemail.get", args=["a"], kwargs={}, id=job)
    results.store_result(job, {"ok": True}, "SUCCESS", request=ours)
    assert store.keys() == []


def test_a_started_state_redis_cannot_take_does_not_fail_the_job(tmp_path: Any) -> None:
    """Redis gone the instant a job starts (a failover): storing STARTED raised, Celery
    failed the job outside its body, stored FAILURE once Redis was back, and the message
    was forgotten, never run (a bulk chunk lost in `test_failover.py`). Now the job runs
    and meets Redis's absence its own way; any other state still raises."""
    from simulator import stack

    own = stack.start_redis(tmp_path)
    app = Celery("backend-gone", backend=backend.backend_url(own.url))
    own.stop()  # gone
    request = Context(task="voicemail.bulk_chunk", args=["b", 1], kwargs={}, id="job-1")
    try:
        assert app.backend.store_result("job-1", {"pid": 1}, "STARTED", request=request)
        with pytest.raises(redis.RedisError):
            app.backend.store_result("job-1", {"ok": True}, "SUCCESS", request=request)
    finally:
        app.close()
