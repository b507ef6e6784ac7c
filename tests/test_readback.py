"""The vendor ends holding the newest update (issue 17): an older update whose answer was
ambiguous and that lands late, after a newer one went through, is noticed by a read-back
and corrected, once, by any worker."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from simulator import stack
from worker.coordination.bulk_status import read_status
from worker.coordination.stats import STATS_KEY

from .conftest import Isolated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

VERIFY_AFTER = 4  # seconds: short, so a test waits for it
SLOW_VERIFY_AFTER = 8  # the bulk test's: its late landings (2 s) all come in well before


@pytest.fixture
def app(isolated: Isolated) -> Iterator[Celery]:
    celery = Celery("readback-test", broker=isolated.redis.url, backend=isolated.redis.url)
    celery.conf.update(task_serializer="json", accept_content=["json"])
    yield celery
    celery.close()


def update(app: Celery, account: str, email: str) -> dict[str, Any]:
    result = app.send_task("voicemail.update", args=[account, True, email])
    answer: dict[str, Any] = result.get(timeout=60)
    return answer


def landing(iso: Isolated, account: str, email: str, within: float = 20) -> float:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for late in iso.sim.late_landings():
            if (late["account"], late["email"]) == (account, email):
                return float(late["at"])
        time.sleep(0.05)
    raise AssertionError(f"{email} never landed late on {account}")


def holds(iso: Isolated, account: str, email: str, by: float) -> None:
    while iso.sim.account(account)["email"] != email:
        assert time.time() < by, f"{account} does not hold {email} in time"
        time.sleep(0.1)


def journaled_correction(iso: Isolated, account: str, within: float = 20) -> dict[str, Any]:
    """The account's newest journal entry once it is the correction (`voicemail history`)."""
    deadline = time.monotonic() + within
    while True:
        proc = iso.cli("history", account, "--limit", "1")
        assert proc.returncode == 0, proc.stderr
        newest: dict[str, Any] = json.loads(proc.stdout)
        if newest["outcome"] == "corrected":
            return newest
        assert time.monotonic() < deadline, newest
        time.sleep(0.2)


def corrections(iso: Isolated) -> int:
    return int(redis.Redis.from_url(iso.redis.url).hget(STATS_KEY, "corrections") or 0)


@pytest.mark.parametrize("fault", ["late-504:3", "late-timeout:3"])
def test_an_older_update_landing_late_is_corrected_once(
    isolated: Isolated, app: Celery, fault: str
) -> None:
    """U1's first attempt is ambiguous (a gateway's 504, or a read timeout) and lands 3 s
    later; its retry and U2 go through in between; the read-back puts U2's values back."""
    (account,) = isolated.import_accounts(1)
    isolated.worker("rb1", VOICEMAIL_VERIFY_AFTER=str(VERIFY_AFTER), VOICEMAIL_READ_TIMEOUT="1")
    isolated.sim.script(account, [fault])
    update(app, account, "v1@acme.ru")  # its second attempt applies v1 at once
    update(app, account, "v2@acme.ru")
    landed = landing(isolated, account, "v1@acme.ru")
    holds(isolated, account, "v2@acme.ru", by=landed + VERIFY_AFTER + 5)
    state = isolated.sim.account(account)
    applied = [email for _, email in state["applied"]]
    # The two updates' own PATCHes, U1's late landing, and one correction: nothing more.
    assert applied == ["v1@acme.ru", "v2@acme.ru", "v1@acme.ru", "v2@acme.ru"]
    assert state["patches"] - len(isolated.sim.late_landings()) == 3
    assert corrections(isolated) == 1
    # Journaled as the project's own doing, under U2, whose values it put back.
    corrected = journaled_correction(isolated, account)
    assert (corrected["actor"], corrected["outcome"]) == ("voicemail", "corrected")
    assert corrected["before"] == {"send": True, "email": "v1@acme.ru"}
    assert corrected["after"] == {"send": True, "email": "v2@acme.ru"}
    assert corrected["reason"].startswith("read-back: a late landing of job:")
    assert corrected["job_id"] is not None


def test_the_read_back_survives_the_worker_that_scheduled_it(
    isolated: Isolated, app: Celery
) -> None:
    """The worker holding U2 is killed right after U2 succeeds: another does the read-back."""
    (account,) = isolated.import_accounts(1)
    env = {"VOICEMAIL_VERIFY_AFTER": str(VERIFY_AFTER), "VOICEMAIL_READ_TIMEOUT": "1"}
    first = isolated.worker("rb-first", **env)
    isolated.sim.script(account, ["late-504:3"])
    update(app, account, "v1@acme.ru")
    update(app, account, "v2@acme.ru")
    first.process.send_signal(signal.SIGKILL)
    first.process.wait(10)
    isolated.worker("rb-second", **env)
    landed = landing(isolated, account, "v1@acme.ru")
    holds(isolated, account, "v2@acme.ru", by=landed + VERIFY_AFTER + 5)
    assert corrections(isolated) == 1


def test_a_clean_update_reads_nothing_back(isolated: Isolated, app: Celery) -> None:
    (account,) = isolated.import_accounts(1)
    isolated.worker("rb-clean", VOICEMAIL_VERIFY_AFTER="1")
    update(app, account, "v1@acme.ru")
    update(app, account, "v2@acme.ru")
    time.sleep(2.5)  # past VOICEMAIL_VERIFY_AFTER: a read-back would have come by now
    state = isolated.sim.account(account)
    assert (state["requests"], state["patches"]) == (2, 2)
    assert corrections(isolated) == 0
    assert stack.redis_answers(isolated.redis.url)


def test_a_bulk_whose_older_rows_land_late_ends_with_the_newer_bulk(isolated: Isolated) -> None:
    """Bulk v1 with 5% of its PATCHes answered 504 and applied 2 s later, bulk v2 for the
    same accounts right after: every account ends with v2, each late landing after v2 is
    corrected once, and nothing else is sent."""
    accounts = isolated.import_accounts(3000)
    isolated.worker("rb-bulk", VOICEMAIL_VERIFY_AFTER=str(SLOW_VERIFY_AFTER))
    isolated.sim.faults(late_rate=0.05, late_kind="504", late_delay=2.0)
    bulk_ids = []
    for version in ("v1", "v2"):
        rows = "account,send,email\n" + "".join(f"{a},true,{version}@acme.ru\n" for a in accounts)
        done = isolated.cli("bulk", "submit", "-", "--wait", input=rows)
        assert done.returncode == 0, done.stderr
        bulk_ids.append(json.loads(done.stdout.strip().splitlines()[-1])["bulk_id"])
    isolated.sim.faults(late_rate=0.0)
    answered_late = isolated.sim.stats()["faults_injected"]["late-504"]
    stack.wait_until(
        lambda: isolated.sim.stats()["late_landings"] == answered_late, 10, "the late landings"
    )
    landings = answered_late
    # Every late landing is in, and no read-back is due yet (VOICEMAIL_VERIFY_AFTER is
    # later than the landings): the accounts an older v1 overtook hold v1 now.
    overtaken = sum(isolated.sim.account(name)["email"] == "v1@acme.ru" for name in accounts)
    deadline = time.time() + SLOW_VERIFY_AFTER + 15
    for name in accounts:
        holds(isolated, name, "v2@acme.ru", by=deadline)
    assert corrections(isolated) == overtaken
    # The rows' own attempts: one per row and bulk, and one retry per ambiguous answer.
    own = 2 * len(accounts) + answered_late
    extra = isolated.sim.stats()["patch_requests"] - own
    assert extra == corrections(isolated)
    # Each correction counts in the bulk whose row is the newest update: v2, though DONE.
    status = read_status(redis.Redis.from_url(isolated.redis.url), bulk_ids[1])
    assert (status.state, status.corrected) == ("DONE", overtaken)
    assert extra <= landings + 0.01 * 2 * len(accounts)
