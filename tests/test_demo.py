"""`voicemail demo` as `make demo` runs it: its own Redis, simulator and worker."""

from __future__ import annotations

import subprocess

import pytest

from .conftest import VOICEMAIL


@pytest.mark.integration
def test_demo_runs_and_cleans_up() -> None:
    proc = subprocess.run(
        [VOICEMAIL, "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "160"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all jobs behaved as expected" in proc.stdout
    assert "UserNotFound: User not found." in proc.stdout
