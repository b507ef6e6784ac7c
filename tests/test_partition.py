"""A worker cut off from the network in the middle of a bulk, while a newer bulk for the
same accounts runs on another worker: the newer values win everywhere, nothing is lost,
both bulks settle, and hardly anything is sent twice.

Two hosts on one machine: worker A in a network namespace of its own, joined to the root
namespace (Redis, the API stand-in, worker B) by a veth pair; `ip link set ... down` on
the root side cuts A off. Needs root and iproute2; skips, saying why, elsewhere.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from simulator import stack
from worker.coordination import ordering as O
from worker.queue import liveness as L

from .conftest import voicemail
from .own_stack import name, own_stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ACCOUNTS = 3000
CLAIM_GONE = ("another update took the account's lock", "this worker was declared dead")
PARTITION_SECONDS = 30.0  # how long A stays cut off, as in the issue: well past its 4 s heartbeat


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


@dataclass
class Link:
    namespace: str
    host_side: str
    host_ip: str

    def down(self) -> None:
        _ip("link", "set", self.host_side, "down")

    def up(self) -> None:
        _ip("link", "set", self.host_side, "up")


def _why_not() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "no iproute2 (ip) here"
    probe = f"vmwp{uuid.uuid4().hex[:6]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, timeout=10)
    if made.returncode != 0:
        return f"cannot make a network namespace: {made.stderr.decode().strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=10)
    return None


@pytest.fixture
def link() -> Iterator[Link]:
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    namespace, host_side, ns_side = f"vmw{tag}", f"vmh{tag}", f"vmn{tag}"
    net = random.randint(1, 250)
    host_ip, ns_ip = f"10.231.{net}.1", f"10.231.{net}.2"
    _ip("netns", "add", namespace)
    try:
        _ip("link", "add", host_side, "type", "veth", "peer", "name", ns_side)
        _ip("link", "set", ns_side, "netns", namespace)
        _ip("addr", "add", f"{host_ip}/24", "dev", host_side)
        _ip("link", "set", host_side, "up")
        for args in (
            ("addr", "add", f"{ns_ip}/24", "dev", ns_side),
            ("link", "set", ns_side, "up"),
            ("link", "set", "lo", "up"),
        ):
            _ip("netns", "exec", namespace, "ip", *args)
        yield Link(namespace, host_side, host_ip)
    finally:
        subprocess.run(["ip", "link", "del", host_side], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=10)


def _cli(env: dict[str, str], *args: str, stdin: str = "") -> dict[str, Any]:
    code, result, err = voicemail(env, *args, stdin=stdin)
    assert code in (0, 1), err
    return result


def _rows(names: list[str], email: str) -> str:
    return "account,send,email\n" + "".join(f"{n},true,{n}-{email}\n" for n in names)


def _resent(states: dict[str, Any]) -> dict[str, int]:
    """PATCHes applied again with values the account already got, by bulk ("old", "new")."""
    counts = {"old": 0, "new": 0}
    for state in states.values():
        seen: set[tuple[Any, ...]] = set()
        for values in state["applied"]:
            if tuple(values) in seen:
                counts["new" if "new@" in str(values) else "old"] += 1
            seen.add(tuple(values))
    return counts


def test_a_cut_off_worker_never_writes_older_values(link: Link, tmp_path: Path) -> None:
    names = [name(i) for i in range(1, ACCOUNTS + 1)]
    limits = {
        "VOICEMAIL_RATE_LIMIT": "200",  # about 15 s for the whole first bulk
        "VOICEMAIL_BULK_CHUNK_SIZE": "100",
    }
    with own_stack(tmp_path, ACCOUNTS, None, limits, host=link.host_ip, appendonly=True) as own:
        env, sim = own.env, own.sim
        own.start_worker("cut", prefix=["ip", "netns", "exec", link.namespace])
        older = str(_cli(env, "bulk", "submit", "-", stdin=_rows(names, "old@e.ru"))["bulk_id"])
        stack.wait_until(
            lambda: len(sim.stats()["patches"]) >= ACCOUNTS // 10, 60, "a tenth of the bulk"
        )
        link.down()
        try:
            newer = str(_cli(env, "bulk", "submit", "-", stdin=_rows(names, "new@e.ru"))["bulk_id"])
            own.start_worker("other")
            time.sleep(PARTITION_SECONDS)  # the partition itself, not synchronisation
        finally:
            link.up()

        def settled(bulk_id: str) -> bool:
            return bool(_cli(env, "bulk", "status", bulk_id)["state"] == "DONE")

        stack.wait_until(lambda: settled(newer) and settled(older), 180, "both bulks DONE", 0.5)
        new_status, old_status = (_cli(env, "bulk", "status", b) for b in (newer, older))
        assert (new_status["succeeded"], new_status["pending"]) == (ACCOUNTS, 0), new_status
        assert old_status["pending"] == 0, old_status
        states = {n: sim.account(n) for n in names}
        stale = [n for n, s in states.items() if s["email"] != f"{n}-new@e.ru"]
        assert stale == [], f"{len(stale)} accounts ended with older values: {stale[:5]}"
        resent = _resent(states)
        print(f"re-sent PATCHes: {resent}")
        assert sum(resent.values()) <= ACCOUNTS // 100, f"PATCHes sent twice: {resent}"


def test_bulk_rows_wait_out_a_reaped_owners_window_without_failing(tmp_path: Path) -> None:
    """Finding 14: a newer bulk reaching accounts a cut-off worker had claimed must wait
    until that worker's requests can no longer land (connect + read timeout + 2 s after
    it was reaped: 9 s here). Its rows were LOCKED, counted as API trouble, and failed once
    the chunk's re-queue budget ran out (about a second here), leaving the older values on
    the accounts; the partition test passed only when its queue order or rate limit kept
    the newer chunks back long enough."""
    count = 200
    names = [name(i) for i in range(1, count + 1)]
    with own_stack(tmp_path, count, None, {"VOICEMAIL_BULK_CHUNK_SIZE": "100"}) as own:
        env, client = own.env, own.redis
        # A worker instance that claimed every account, then was cut off and reaped now.
        gone = L.new_instance_id()
        seconds, micros = client.time()
        older = int(seconds) * 1_000_000 + int(micros)
        verdicts = O.Ordering(client).claim(f"{gone}:f1", [(n, older) for n in names])
        assert set(verdicts) == {O.Verdict.CLAIMED}
        client.set(L.dead_key(gone), L.redis_ms(client), ex=3600)
        worker = own.start_worker("waiter")
        bulk_id = str(_cli(env, "bulk", "submit", "-", stdin=_rows(names, "new@e.ru"))["bulk_id"])
        stack.wait_until(
            lambda: _cli(env, "bulk", "status", bulk_id)["state"] == "DONE", 120, "DONE", 0.5
        )
        status = _cli(env, "bulk", "status", bulk_id)
        assert (status["succeeded"], status["failed"]) == (count, 0), status
        assert all(own.sim.account(n)["email"] == f"{n}-new@e.ru" for n in names)
        assert "wait for other updates of their accounts" in worker.log()


@pytest.mark.timeout(300)  # the old job waits out a 30 to 60 s backoff on purpose
def test_a_single_job_retrying_while_cut_off_sends_nothing_after_the_link_returns(
    link: Link, tmp_path: Path
) -> None:
    """Issue 17: a job retrying in process while its host is cut off; a newer update of the
    account goes through on another worker. When the link returns, the cut-off worker's
    next attempt finds its claim gone (it was declared dead) and sends nothing: the newer
    values stay."""
    account = name(1)
    with own_stack(tmp_path, 1, None, host=link.host_ip, appendonly=True) as own:
        env, sim = own.env, own.sim
        # The cut-off worker waits 30 to 60 s before its second attempt: the partition and
        # the newer update both fit in that wait.
        slow = {"VOICEMAIL_RETRY_BASE_DELAY": "60", "VOICEMAIL_RETRY_MAX_DELAY": "60"}
        cut = own.start_worker("cut1", prefix=["ip", "netns", "exec", link.namespace], **slow)
        sim.script(account, ["503"])  # its first attempt fails; it sleeps before the next
        _cli(env, "update", account, "--send", "--email", "older@e.ru")
        stack.wait_until(lambda: sim.requests(account) >= 1, 30, "the first attempt")
        link.down()
        try:
            other = own.start_worker("other1")
            _cli(env, "update", account, "--send", "--email", "newer@e.ru")
            stack.wait_until(
                lambda: sim.account(account)["email"] == "newer@e.ru", 60, "the newer update"
            )
        finally:
            link.up()

        # Its next attempt finds the claim gone (to the newer update, or with its worker
        # declared dead): it sends nothing (tasks/voicemail.py ClaimGone, logged).
        # (Or, had its wait ended with Redis out of reach, its redelivery finds the newer
        # update applied.) Either way the old job is over without sending.
        def old_job_over() -> bool:
            logs = cut.log() + other.log()
            return any(said in logs for said in (*CLAIM_GONE, "a later update is already"))

        stack.wait_until(old_job_over, 150, "the old job", 0.5)
        state = sim.account(account)
        assert state["email"] == "newer@e.ru"
        # The older update may have gone through first (its message, given back when its
        # worker was reaped, ran elsewhere); nothing older ever came after the newer one.
        emails = [email for _, email in state["applied"]]
        assert "older@e.ru" not in emails[emails.index("newer@e.ru") :], emails
