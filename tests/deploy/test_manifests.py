"""The deployment files: they parse, and they keep the invariants the collector relies on.

No Docker engine or Kubernetes runs here: manifests are checked as data. ``docker compose
config`` and ``promtool`` run when they are installed.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import msgspec
import pytest
import yaml

from tests.conftest import REPO_ROOT
from touchpoint_collector.config import ENV_PREFIX, Config, load_config
from touchpoint_collector.keys import KeyFile
from touchpoint_collector.metrics import HELP

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
OPERATIONS = REPO_ROOT / "docs" / "operations.md"
POD_LABELS = {"app.kubernetes.io/name": "touchpoint-collector"}


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    objects = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_all(path):
            if "kind" in doc and doc["kind"] != "Kustomization":
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def statefulset() -> dict[str, Any]:
    return k8s_objects()[("StatefulSet", "touchpoint-collector")]


def collector_container() -> dict[str, Any]:
    containers = statefulset()["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "collector")


def configmap_toml() -> dict[str, Any]:
    data = k8s_objects()[("ConfigMap", "touchpoint-config")]["data"]
    return tomllib.loads(data["touchpoint.toml"])


def entrypoint_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("touchpoint_entrypoint", DEPLOY / "entrypoint.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- every file parses ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    sorted([*DEPLOY.glob("*.yml"), *DEPLOY.glob("*.yaml"), *K8S.glob("*.yaml")]),
    ids=lambda p: str(p.relative_to(REPO_ROOT)),
)
def test_yaml_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs and all(isinstance(doc, dict) for doc in docs)


def test_kustomization_lists_every_manifest() -> None:
    (kustomization,) = load_all(K8S / "kustomization.yaml")
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files


def test_grafana_dashboard_is_json_over_known_metrics() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 10
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
    assert metric_names(" ".join(exprs)) <= set(HELP)


def metric_names(text: str) -> set[str]:
    return {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"touchpoint_\w+", text)}


# -- Kubernetes ----------------------------------------------------------------------


def test_probes_use_the_collector_endpoints() -> None:
    container = collector_container()
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == configmap_toml()["server"]["port"]


def test_grace_period_covers_pre_stop_and_the_shutdown_drain() -> None:
    spec = statefulset()["spec"]["template"]["spec"]
    shutdown = configmap_toml()["server"]["shutdown_timeout_seconds"]
    pre_stop = collector_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop == ["touchpoint-entrypoint", "pre-stop"]
    defaults = entrypoint_module().pre_stop.__defaults__  # (settle, budget)
    assert spec["terminationGracePeriodSeconds"] > shutdown + sum(defaults) + 5


def test_collector_id_is_the_pod_name() -> None:
    env = {e["name"]: e for e in collector_container()["env"]}
    source = env["TOUCHPOINT_COLLECTOR_ID"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert source == "metadata.name"


def test_each_pod_has_its_own_volume_for_the_log() -> None:
    spec = statefulset()["spec"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in collector_container()["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == configmap_toml()["data_dir"] == "/data"
    pod_volumes = {v["name"] for v in spec["template"]["spec"]["volumes"]}
    assert claim["metadata"]["name"] not in pod_volumes  # per pod, not shared
    assert spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"


def test_pods_run_as_non_root() -> None:
    pod = statefulset()["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    for container in [*pod["initContainers"], *pod["containers"]]:
        context = container["securityContext"]
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]


def test_keys_come_from_the_secret_and_schema_from_migrate_cluster() -> None:
    pod = statefulset()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["keys"]["secret"]["secretName"] == "touchpoint-keys"
    init = {c["name"]: c for c in pod["initContainers"]}
    assert "/data/keys.json" in " ".join(init["keys"]["command"])
    assert init["migrate"]["command"][:3] == ["touchpoint", "migrate", "--cluster"]
    secret = k8s_objects()[("Secret", "touchpoint-keys")]
    msgspec.json.decode(secret["stringData"]["keys.json"], type=KeyFile)


def test_configmap_is_a_valid_collector_config(tmp_path: Path) -> None:
    data = k8s_objects()[("ConfigMap", "touchpoint-config")]["data"]
    path = tmp_path / "touchpoint.toml"
    path.write_text(data["touchpoint.toml"])
    config = load_config(path, env={})
    assert config.server.host == "0.0.0.0"
    assert data["clickhouse-cluster"]
    env_names = {
        e["name"]
        for c in statefulset()["spec"]["template"]["spec"]["initContainers"]
        for e in c.get("env", [])
    }
    assert not {n for n in env_names if n.startswith(ENV_PREFIX)} - {
        "TOUCHPOINT_CONFIG",
        "TOUCHPOINT_STORE__DSN",
    }  # any other TOUCHPOINT_* variable would be read as a setting


def test_service_pdb_and_hpa_select_the_collectors() -> None:
    objects = k8s_objects()
    sts = statefulset()
    assert sts["spec"]["selector"]["matchLabels"] == POD_LABELS
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for kind, name in (
        ("Service", "touchpoint-collector"),
        ("Service", sts["spec"]["serviceName"]),
    ):
        service = objects[(kind, name)]
        assert service["spec"]["selector"].items() <= labels.items()
        assert {p["targetPort"] for p in service["spec"]["ports"]} == {"http"}
    pdb = objects[("PodDisruptionBudget", "touchpoint-collector")]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = objects[("HorizontalPodAutoscaler", "touchpoint-collector")]
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "name": "touchpoint-collector",
    }
    assert hpa["spec"]["minReplicas"] >= 2


# -- image and compose ----------------------------------------------------------------


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) == 2  # build, then runtime
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS runtime", text, re.MULTILINE)
    assert "PYTHON_IMAGE=python:3.11-slim" in text
    user = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^VOLUME \[\"/data\"\]", text, re.MULTILINE)
    assert "TOUCHPOINT_DATA_DIR=/data" in text and "TOUCHPOINT_SERVER__HOST=0.0.0.0" in text
    healthcheck = re.search(r"^HEALTHCHECK .*?\n(?:\s+CMD .*)$", text, re.MULTILINE)
    assert healthcheck and "urllib" in healthcheck[0] and "/healthz" in healthcheck[0]
    assert 'ENTRYPOINT ["touchpoint-entrypoint"]' in text
    assert '"touchpoint", "serve"' in (DEPLOY / "entrypoint.py").read_text()
    dockerignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    for copied in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+)", text, re.MULTILINE):
        assert any(line.startswith(f"!{copied.split('/')[0]}") for line in dockerignore), copied


def test_compose_wires_clickhouse_collector_and_prometheus() -> None:
    (compose,) = load_all(DEPLOY / "docker-compose.yml")
    services = compose["services"]
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    collector = services["collector"]
    assert collector["environment"]["TOUCHPOINT_STORE__DSN"].startswith("http://")
    assert "@clickhouse:8123" in collector["environment"]["TOUCHPOINT_STORE__DSN"]
    assert collector["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    assert any(v.endswith(":/data") for v in collector["volumes"])
    shutdown = float(collector["environment"]["TOUCHPOINT_SERVER__SHUTDOWN_TIMEOUT_SECONDS"])
    assert float(collector["stop_grace_period"].rstrip("s")) > shutdown
    mounts = " ".join(services["prometheus"]["volumes"])
    assert "./prometheus.yml:" in mounts and "./prometheus-rules.yml:" in mounts
    (prometheus,) = load_all(DEPLOY / "prometheus.yml")
    (job,) = prometheus["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["collector:8088"]


def test_docker_compose_config() -> None:
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode
    ):
        pytest.skip("the docker compose plugin is not installed here")
    out = subprocess.run(
        [docker, "compose", "-f", str(DEPLOY / "docker-compose.yml"), "config", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


# -- alerts --------------------------------------------------------------------------


def test_alert_rules_cover_the_collector_signals() -> None:
    (rules,) = load_all(DEPLOY / "prometheus-rules.yml")
    exprs = {r["alert"]: r["expr"] for g in rules["groups"] for r in g["rules"]}
    text = " ".join(exprs.values())
    assert metric_names(text) <= set(HELP)
    assert "touchpoint_wal_oldest_unloaded_seconds" in text  # log age
    assert 'status="503"' in text  # 503 rate
    assert 'outcome="rejected"' in text  # rejected rate
    assert "touchpoint_clickhouse_errors_total" in text  # insert errors
    assert "touchpoint_ready" in text  # readiness
    for name in exprs:
        assert f"`{name}`" in OPERATIONS.read_text()  # every alert has a runbook line


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed here")
    out = subprocess.run(
        [promtool, "check", "rules", str(DEPLOY / "prometheus-rules.yml")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


# -- the configuration reference matches the code ------------------------------------


def config_keys(cls: type = Config, prefix: str = "") -> dict[str, type | None]:
    """Every setting, walking the msgspec Structs: nested sections recurse,
    ``dict[str, Struct]`` is ``<name>``, lists of Structs are ``[]``."""
    keys: dict[str, type | None] = {}
    for field in msgspec.inspect.type_info(cls).fields:  # type: ignore[union-attr]
        kind = field.type
        key = prefix + field.name
        if isinstance(kind, msgspec.inspect.StructType):
            keys.update(config_keys(kind.cls, key + "."))
        elif isinstance(kind, msgspec.inspect.DictType) and isinstance(
            kind.value_type, msgspec.inspect.StructType
        ):
            keys.update(config_keys(kind.value_type.cls, key + ".<name>."))
        elif isinstance(kind, msgspec.inspect.ListType) and isinstance(
            kind.item_type, msgspec.inspect.StructType
        ):
            keys.update(config_keys(kind.item_type.cls, key + "[]."))
        else:
            keys[key] = None
    return keys


def documented_settings() -> dict[str, list[str]]:
    text = OPERATIONS.read_text()
    section = text.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 4:
            rows[cells[0].strip("`")] = cells
    return rows


def test_every_setting_is_documented_and_every_documented_setting_exists() -> None:
    documented = documented_settings()
    code = config_keys()
    assert sorted(set(code) - set(documented)) == [], "settings missing from docs/operations.md"
    assert sorted(set(documented) - set(code)) == [], "docs/operations.md names unknown settings"


def test_documented_environment_variables() -> None:
    for key, (_, env, default, meaning) in documented_settings().items():
        assert meaning and default, key
        if "[]" in key:
            section = key.split("[]")[0]
            assert env.startswith(f"`{ENV_PREFIX}{section.replace('.', '__').upper()}`"), key
        else:
            expected = ENV_PREFIX + key.replace("<name>", "<NAME>").replace(".", "__").upper()
            assert env.startswith(f"`{expected}`"), (key, env)


def test_documented_environment_variables_are_read(tmp_path: Path) -> None:
    """The documented names really set the settings (one per section kind)."""
    config = load_config(
        env={
            "TOUCHPOINT_SERVER__SHUTDOWN_TIMEOUT_SECONDS": "45",
            "TOUCHPOINT_SOURCES__SHOP__RATE_LIMIT": "100",
            "TOUCHPOINT_TAXONOMY__CHANNELS": '[{name = "kiosk", online = false}]',
            "TOUCHPOINT_TAXONOMY__EVENTS": '{ "Signup Finished" = "newsletter_signup" }',
            "TOUCHPOINT_DATA_DIR": str(tmp_path),
        }
    )
    assert config.server.shutdown_timeout_seconds == 45
    assert config.source("shop").rate_limit == 100
    assert config.taxonomy.channels[0].name == "kiosk"
    assert config.taxonomy.events == {"Signup Finished": "newsletter_signup"}


# -- the image's entrypoint ----------------------------------------------------------
