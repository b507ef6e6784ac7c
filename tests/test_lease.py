"""worker.queue.lease: which deliveries the worker still holds."""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

from celery.worker import state

from worker.queue.lease import held_delivery_tags


@dataclass(eq=False)  # hashed by identity, as Celery's requests, and weakly referable
class _Request:
    id: str
    message: SimpleNamespace


def _request(job_id: str, tag: str) -> _Request:
    return _Request(job_id, SimpleNamespace(delivery_tag=tag))


def test_a_finished_request_left_in_a_list_is_not_held() -> None:
    """`Consumer.on_close` snapshots the running requests, clears `reserved_requests` and
    puts the snapshot back: a job that finished in between (`task_ready`) stays listed.
    Seen in a Sentinel failover: its lease was renewed forever and its chunk never ran
    again. Only a request still in `state.requests` is held."""
    running = _request("job-running", "tag-running")
    finished = _request("job-finished", "tag-finished")
    state.requests[running.id] = running
    state.active_requests.add(running)
    state.reserved_requests.add(finished)  # task_ready popped it from state.requests
    try:
        assert held_delivery_tags() == {"tag-running"}
    finally:
        state.requests.pop(running.id, None)
        state.active_requests.discard(running)
        state.reserved_requests.discard(finished)
