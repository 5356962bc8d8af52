"""deploy/ cannot run here (no Docker engine): check what can be checked without one."""

import re
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from streamproc.cli import build_parser
from streamproc.local.apache_kafka import kafka_version
from streamproc.settings import PREFIX, Settings

from helpers import REPO

DEPLOY = REPO / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
COMPOSE = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
CONFIGMAP = yaml.safe_load((DEPLOY / "kubernetes" / "configmap.yaml").read_text())
KUBERNETES_VERSION = "1.31.0"


def _documents():
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text()):
            yield path.name, document


@pytest.mark.parametrize(("name", "document"), list(_documents()), ids=lambda v: str(v)[:40])
def test_kubernetes_manifests_match_their_schemas(name, document):
    kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def test_kubernetes_has_what_the_design_asks_for():
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _, doc in _documents()}
    assert {
        ("Deployment", "streamproc-edge"),
        ("Service", "streamproc-edge"),
        ("HorizontalPodAutoscaler", "streamproc-edge"),
        ("StatefulSet", "streamproc-worker"),
        ("Deployment", "streamproc-fetch"),
        ("ConfigMap", "streamproc"),
        ("Secret", "streamproc"),
        ("Job", "streamproc-topics"),
    } <= kinds


def _dummy(value: str) -> str:
    """``${NAME:?message}`` placeholders get a valid stand-in."""
    return re.sub(r"\$\{[^}]*\}", "ZHVtbXk=", value)


def test_every_setting_in_deploy_is_known_and_valid():
    environments = [
        {k: str(v) for k, v in service.get("environment", {}).items()}
        for service in COMPOSE["services"].values()
    ]
    environments += [doc["data"] for _, doc in _documents() if doc["kind"] == "ConfigMap"]
    known = {PREFIX + name.upper() for name in Settings.__dataclass_fields__}
    known |= {PREFIX + "DAILY_SECRETS", PREFIX + "OPENVIDU_SECRETS", PREFIX + "SINK"}
    for environment in environments:
        ours = {k: _dummy(v) for k, v in environment.items() if k.startswith(PREFIX)}
        assert set(ours) <= known, set(ours) - known
        Settings.from_env(ours)


def test_the_cluster_deployment_replicates_every_topic_it_creates():
    settings = Settings.from_env(CONFIGMAP["data"])
    assert (settings.topic_replication_factor, settings.topic_min_insync_replicas) == (3, 2)


def _role(environment: dict) -> str:
    return Settings.from_env({k: str(v) for k, v in environment.items()}).worker_role


def test_compose_runs_kafka_kraft_minio_an_edge_two_fold_workers_and_a_fetch_worker():
    services = COMPOSE["services"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert services["kafka"]["image"] == f"apache/kafka:{kafka_version()}", "not the tested Kafka"
    assert "minio" in services
    workers = [s for s in services.values() if s.get("command") == ["worker"]]
    folds = [w for w in workers if _role(w["environment"]) == "fold"]
    fetchers = [w for w in workers if _role(w["environment"]) == "fetch"]
    assert len(folds) == 2 and len(fetchers) == 1 and len(workers) == 3
    assert len({str(w["volumes"]) for w in folds}) == 2, "fold workers must not share a table"
    assert "volumes" not in fetchers[0], "a fetch worker keeps no state: it scales freely"


def test_kubernetes_runs_stateful_fold_workers_and_stateless_fetch_workers():
    pods = {
        doc["kind"]: doc["spec"]
        for _, doc in _documents()
        if doc["kind"] in ("StatefulSet", "Deployment")
        and doc["spec"]["template"]["spec"]["containers"][0]["args"] == ["worker"]
    }
    roles = {
        kind: {e["name"]: e["value"] for e in spec["template"]["spec"]["containers"][0]["env"]}
        for kind, spec in pods.items()
    }
    assert _role(roles["StatefulSet"]) == "fold" and pods["StatefulSet"]["volumeClaimTemplates"]
    assert _role(roles["Deployment"]) == "fetch"


def _commands():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["streamproc"\]$', dockerfile, re.M)
    default = re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1)
    commands = [tuple(yaml.safe_load(default))]
    commands += [
        tuple(s["command"]) for s in COMPOSE["services"].values() if "build" in s and "command" in s
    ]
    for _, doc in _documents():
        spec = doc.get("spec", {})
        pod = spec.get("template", {}).get("spec", {})
        commands += [tuple(c["args"]) for c in pod.get("containers", [])]
    return sorted(set(commands))


@pytest.mark.parametrize("command", _commands())
def test_the_image_entry_points_exist(command):
    build_parser().parse_args(list(command))
    result = subprocess.run(
        [sys.executable, "-m", "streamproc", *command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_prometheus_scrapes_every_worker_service_of_compose():
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    [job] = [j for j in scrape["scrape_configs"] if j["job_name"] == "streamproc-worker"]
    hosts = {t.split(":")[0] for c in job.get("static_configs", []) for t in c["targets"]}
    hosts |= {name for c in job.get("dns_sd_configs", []) for name in c["names"]}
    workers = {n for n, s in COMPOSE["services"].items() if s.get("command") == ["worker"]}
    assert hosts == workers
