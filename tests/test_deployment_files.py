"""The deployment files under deploy/ are checked by the tools their platforms use: the Dockerfile by
hadolint, the compose file by a Compose-spec parser, the Kubernetes manifests against the API's
schemas, the systemd unit by ``systemd-analyze verify`` (where the machine has it); and the configs
they ship are ones ``monitor validate`` accepts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import compose_spec
import pytest
import yaml

from monitor.cli import main

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
SECRETS = {"MONITOR_DATABASE_URL": "postgresql+psycopg://monitor:x@127.0.0.1:5432/monitor", "MONITOR_TOKEN": "t0ken"}


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    assert Path(found).exists(), f"{name} is a test dependency (pyproject.toml's test extra)"
    return found


def test_the_dockerfile_passes_hadolint_runs_unprivileged_and_checks_its_health():
    done = subprocess.run([tool("hadolint"), str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.count("\nFROM ") + text.startswith("FROM ") == 2  # built in one stage, run from another
    assert "\nUSER 10001\n" in text and "HEALTHCHECK" in text and "/healthz" in text


def test_the_compose_file_is_valid_compose_with_the_daemon_waiting_for_a_healthy_postgres():
    compose = compose_spec.PyCompose.from_yaml((DEPLOY / "docker-compose.yml").read_text())
    assert sorted(compose.service_names()) == ["monitor", "postgres"]
    spec = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    daemon = spec["services"]["monitor"]
    assert daemon["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert daemon["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert all(f"${{{key}" in yaml.safe_dump(daemon["environment"]) for key in ("POSTGRES_PASSWORD", "MONITOR_TOKEN"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.name for m in MANIFESTS])
def test_each_kubernetes_manifest_is_valid_against_the_apis_schema(manifest):
    done = subprocess.run([tool("kubernetes-validate"), "--strict", str(manifest)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_deployment_probes_healthz_runs_unprivileged_replicas_rolling_and_mounts_their_files():
    [deployment] = yaml.safe_load_all((DEPLOY / "kubernetes" / "deployment.yaml").read_text())
    spec = deployment["spec"]
    assert (spec["replicas"], spec["strategy"]["type"]) == (2, "RollingUpdate")  # replicas share one PostgreSQL
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    [container] = spec["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"  # degraded: no traffic
    assert container["livenessProbe"]["tcpSocket"]["port"] == "http"  # alive: a degraded daemon is not restarted
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/etc/monitor/config.yaml", "/etc/monitor/checks"}


def test_the_shipped_configs_validate(tmp_path, monkeypatch, capsys):
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MONITOR_CONFIG", raising=False)
    # the compose file's: deploy/config.yaml with the example check files
    shutil.copy(DEPLOY / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(DEPLOY.parent / "checks", tmp_path / "checks")
    shutil.copytree(DEPLOY.parent / "data", tmp_path / "data")
    assert main(["validate", "--config", str(tmp_path / "config.yaml")]) == 0, capsys.readouterr().err
    # Kubernetes': the ConfigMaps' files, as the pod sees them
    mounted = tmp_path / "pod"
    config_map, checks_map = yaml.safe_load_all((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
    (mounted / "checks").mkdir(parents=True)
    (mounted / "config.yaml").write_text(config_map["data"]["config.yaml"])
    for name, text in checks_map["data"].items():
        (mounted / "checks" / name).write_text(text)
    assert main(["validate", "--config", str(mounted / "config.yaml")]) == 0, capsys.readouterr().err


def test_the_systemd_unit_verifies_and_reloads_with_sighup(tmp_path):
    unit = (DEPLOY / "monitor.service").read_text()
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in unit and "\nKillSignal=SIGTERM\n" in unit
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not on this machine: the unit is checked by its keys above only")
    # The unit names where an install puts the command; here, this Python's, which exists.
    here = tmp_path / "monitor.service"
    here.write_text(unit.replace("ExecStart=/opt/monitor/bin/monitor run", f"ExecStart={sys.executable} -m monitor run"))
    done = subprocess.run([analyze, "verify", str(here)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "monitor.service" in line]
    assert done.returncode == 0 and problems == [], done.stdout + done.stderr
