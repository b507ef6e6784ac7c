"""docker-compose.yml, .env.example and deploy/ stay true to the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import fakeredis
import pytest
import yaml

from tasks.metrics import VoicemailCollector
from worker.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:  # type: ignore[type-arg]
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_services() -> None:
    services = compose()["services"]
    assert set(services) >= {"redis", "worker", "flower", "simulator", "metrics"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert redis["volumes"] == ["redis-data:/data"]
    assert "healthcheck" in redis
    assert "voicemail health" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "ports" not in services["worker"]  # so `--scale worker=4` works
    assert services["flower"]["ports"] == ["5555:5555"]
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert services["simulator"]["profiles"] == ["local"]
    assert {s.get("build") for s in services.values() if s is not redis} == {"."}


def test_env_example_lists_every_variable() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    wanted = {str(f.validation_alias) for f in Settings.model_fields.values()}
    assert wanted - documented == set()


@pytest.mark.skipif(
    shutil.which("docker") is None
    or subprocess.run(
        ["docker", "compose", "version"], capture_output=True, check=False
    ).returncode,
    reason="the docker compose plugin is not installed here",
)
def test_docker_compose_config_validates() -> None:
    subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, check=True, timeout=60)


def exported_names() -> set[str]:
    names = set()
    for family in VoicemailCollector(fakeredis.FakeRedis(), fakeredis.FakeRedis()).collect():
        names.add(family.name)
        if family.type == "counter":
            names.add(family.name + "_total")
        names.update(sample.name for sample in family.samples)
    return names


def test_dashboard_and_alerts_use_real_metrics() -> None:
    names = exported_names()
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    alerts = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())
    exprs += [rule["expr"] for group in alerts["groups"] for rule in group["rules"]]
    used = {m for expr in exprs for m in re.findall(r"voicemail_[a-z_]+", expr)}
    assert used and used <= names, used - names
