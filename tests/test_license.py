"""The project is MIT-licensed: the LICENSE file, pyproject and the built metadata agree."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_file_is_mit() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text


def test_pyproject_names_mit() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] in ("MIT", {"text": "MIT"})


def test_built_metadata_names_mit_and_ships_the_file(tmp_path: Path) -> None:
    build = (
        "import setuptools.build_meta as b, sys; "
        "print(b.prepare_metadata_for_build_wheel(sys.argv[1]))"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", build, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    dist_info = tmp_path / proc.stdout.strip().splitlines()[-1]
    metadata = (dist_info / "METADATA").read_text().splitlines()
    assert {"License: MIT", "License-Expression: MIT"} & set(metadata), metadata[:20]
    assert "License-File: LICENSE" in metadata
    shipped = [p for p in dist_info.rglob("LICENSE") if p.is_file()]
    assert shipped and shipped[0].read_text() == (ROOT / "LICENSE").read_text()
