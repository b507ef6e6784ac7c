"""docker-compose.yml, .env.example and deploy/ stay true to the code."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import yaml

from cli.metrics import VoicemailCollector
from worker.core.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_services() -> None:
    services = compose()["services"]
    assert set(services) >= {"redis", "worker", "flower", "simulator", "metrics"}
    redis = services["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert redis["volumes"] == ["redis-data:/data"]
    assert "healthcheck" in redis
    assert "voicemail health" in " ".join(services["worker"]["healthcheck"]["test"])
    assert "ports" not in services["worker"]  # so `--scale worker=4` works
    # Flower's /metrics may answer without credentials (Flower issue 1342): loopback only.
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert "VOICEMAIL_METRICS_BASIC_AUTH" in services["metrics"]["environment"]
    scrape = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    voicemail_job = next(j for j in scrape["scrape_configs"] if j["job_name"] == "voicemail")
    assert "basic_auth" in voicemail_job
    assert services["simulator"]["profiles"] == ["local"]
    assert {s.get("build") for s in services.values() if s is not redis} == {"."}


def test_env_example_lists_every_variable() -> None:
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", (ROOT / ".env.example").read_text(), re.M)
    )
    wanted = {str(f.validation_alias) for f in Settings.model_fields.values()}
    assert wanted - documented == set()


def compose_command() -> list[str] | None:
    """`docker compose` (the plugin) or `docker-compose` (v1), whichever answers."""
    for command in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(command[0]) is None:
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, check=False)
        if probe.returncode == 0:
            return command
    return None


def env_example() -> dict[str, str]:
    """Every variable .env.example lists (commented out or not) and its example value."""
    found = re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=(.*)$", (ROOT / ".env.example").read_text(), re.M)
    return dict(found)


SECRETS = {"VOICEMAIL_SECRET_KEY", "VOICEMAIL_OLD_SECRET_KEYS", "PLUSOFON_TOKEN"}
REDIS = {"REDIS_URL", "CELERY_BROKER_URL", "VOICEMAIL_SENTINEL_MASTER"}
# What each service's code reads: the Celery app (worker/queue/app.py) for Flower,
# cli/metrics.py for the exporter, everything in Settings but the exporter's auth for the worker.
CELERY_APP = REDIS | {
    "CELERY_RESULT_BACKEND",
    "VOICEMAIL_VISIBILITY_TIMEOUT",
    "VOICEMAIL_RESULT_EXPIRES",
}
SETTINGS = {str(f.validation_alias) for f in Settings.model_fields.values()}
READS = {
    "worker": SETTINGS - {"VOICEMAIL_METRICS_BASIC_AUTH"},
    "flower": CELERY_APP | {"FLOWER_BASIC_AUTH"},
    "metrics": REDIS | {"VOICEMAIL_METRICS_BASIC_AUTH"},
    "web": CELERY_APP | {"PORT"},
    "simulator": set(),
}


def test_compose_secrets_only_reach_the_worker() -> None:
    services = compose()["services"]
    assert set(services["worker"]["environment"]) >= SECRETS
    for name in ("flower", "metrics", "web", "simulator"):
        assert set(services[name].get("environment") or {}) & SECRETS == set(), name


def test_compose_passes_every_env_example_variable_to_its_readers() -> None:
    services = compose()["services"]
    for name, reads in READS.items():
        environment = services[name].get("environment") or {}
        assert reads - set(environment) == set(), name
        # Given the value the shell or .env has (an entry with none), never a blank default;
        # REDIS_URL alone is pinned to the compose redis service.
        pinned = {k: v for k, v in environment.items() if v is not None}
        assert pinned == ({"REDIS_URL": "redis://redis:6379/0"} if reads else {}), name
    reaching = {var for s in services.values() for var in s.get("environment") or {}}
    assert set(env_example()) - reaching == set()
    # A .env copied from .env.example must not hand Flower an empty FLOWER_BASIC_AUTH.
    assert re.search(r"^FLOWER_BASIC_AUTH=\s*$", (ROOT / ".env.example").read_text(), re.M) is None


def compose_config(command: list[str], project: Path) -> dict[str, Any]:
    """`config` for our compose file, with `project`'s .env (if any) and no shell variables."""
    compose_file = str(ROOT / "docker-compose.yml")
    proc = subprocess.run(
        [*command, "-f", compose_file, "--project-directory", str(project), "config"],
        env={"PATH": os.environ["PATH"], "HOME": str(project)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = yaml.safe_load(proc.stdout)
    return data


@pytest.mark.skipif(compose_command() is None, reason="no docker compose here to validate with")
def test_docker_compose_config_validates(tmp_path: Path) -> None:
    command = compose_command()
    assert command is not None
    subprocess.run([*command, "config", "--quiet"], cwd=ROOT, check=True, timeout=60)
    bare = compose_config(command, tmp_path)["services"]
    assert not (bare["flower"].get("environment") or {}).get("FLOWER_BASIC_AUTH")

    (tmp_path / ".env").write_text((ROOT / ".env.example").read_text())
    services = compose_config(command, tmp_path)["services"]
    assert not (services["flower"].get("environment") or {}).get("FLOWER_BASIC_AUTH")
    assert services["worker"]["environment"]["VOICEMAIL_BULK_CHUNK_SIZE"] == "1000"
    assert services["worker"]["environment"]["REDIS_URL"] == "redis://redis:6379/0"

    secrets = "PLUSOFON_TOKEN=tok-compose\nVOICEMAIL_SECRET_KEY=" + "k" * 40 + "\n"
    (tmp_path / ".env").write_text(secrets + "FLOWER_BASIC_AUTH=ops:compose-pass\n")
    services = compose_config(command, tmp_path)["services"]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "ops:compose-pass"
    assert services["worker"]["environment"]["PLUSOFON_TOKEN"] == "tok-compose"
    for name in ("flower", "metrics", "web", "simulator"):
        leaked = {k: v for k, v in (services[name].get("environment") or {}).items() if v}
        assert "tok-compose" not in leaked.values() and "k" * 40 not in leaked.values(), name


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


def alert_names() -> set[str]:
    alerts = yaml.safe_load((ROOT / "deploy" / "alerts.yml").read_text())
    return {rule["alert"] for group in alerts["groups"] for rule in group["rules"]}


def test_every_alert_has_a_firing_and_a_quiet_rule_test() -> None:
    tests = yaml.safe_load((ROOT / "deploy" / "alerts.test.yml").read_text())
    assert tests["rule_files"] == ["alerts.yml"]
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case["alert_rule_test"]:
            (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alert_names() - fires == set(), "alerts never shown firing"
    assert alert_names() - quiet == set(), "alerts never shown quiet"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool (Debian: prometheus)")
def test_alert_rules_pass_promtool() -> None:
    deploy = ROOT / "deploy"
    for command in (["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]):
        proc = subprocess.run(
            ["promtool", *command], cwd=deploy, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
