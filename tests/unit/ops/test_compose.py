"""docker-compose.yml is well-formed and agrees with the settings module and the CLI."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from services.cli import app
from services.core.config import Settings, env_name

ROOT = Path(__file__).resolve().parents[3]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
FIELD_OF = {env_name(f): f for f in Settings.model_fields}
ENV_NAMES = set(FIELD_OF)
YUQING = {n: s for n, s in SERVICES.items() if s.get("image") == "yuqing:latest"}


def test_topology_has_infra_and_every_role():
    for infra in ("kafka", "redis", "elasticsearch", "kibana"):
        assert infra in SERVICES
        assert "healthcheck" in SERVICES[infra], f"{infra} needs a healthcheck"
    assert {"ingest", "classify", "sink", "alerts", "deliver", "api"} <= set(YUQING)


def test_depends_on_targets_exist_and_wait_for_health():
    for name, svc in SERVICES.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in SERVICES, f"{name} depends on unknown {dep}"
            assert cond["condition"] == "service_healthy"
            assert "healthcheck" in SERVICES[dep], f"{name} waits for {dep}, which has no healthcheck"


def test_classify_reserves_a_gpu():
    devices = SERVICES["classify"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]


@pytest.mark.parametrize("name", sorted(YUQING))
def test_role_environment_uses_real_settings(name):
    env = YUQING[name]["environment"]
    unknown = set(env) - ENV_NAMES
    assert not unknown, f"{name} sets variables the settings module does not read: {unknown}"
    s = Settings(**{FIELD_OF[k]: v for k, v in env.items()})  # values must validate
    assert s.kafka_bootstrap == "kafka:9092"


def test_ports_match_the_settings_defaults():
    d = Settings.model_construct()  # the defaults, whatever this shell's environment says
    assert f"{d.kafka_bootstrap.rsplit(':', 1)[1]}:9092" in SERVICES["kafka"]["ports"][0]
    assert SERVICES["elasticsearch"]["ports"][0].startswith(d.es_url.rsplit(":", 1)[1])
    assert SERVICES["redis"]["ports"][0].startswith(d.redis_url.rsplit(":", 1)[1].split("/")[0])
    assert SERVICES["api"]["ports"][0] == f"{d.api_port}:{d.api_port}"


@pytest.mark.parametrize("name", sorted(YUQING))
def test_role_commands_exist_in_the_cli(name):
    command = YUQING[name]["command"]
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, f"`yuqing {' '.join(command)}` is not a valid command: {result.output}"
