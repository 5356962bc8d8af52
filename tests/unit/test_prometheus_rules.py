"""deploy/prometheus and deploy/grafana: rules that promtool accepts and whose unit tests pass,
and no alert or panel that names a metric the code does not export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter

import pytest
import yaml

from streamproc.edge.metrics import EdgeMetrics
from streamproc.worker.metrics import WorkerCollector, WorkerMetrics

from helpers import REPO

PROMETHEUS = REPO / "deploy" / "prometheus"
DASHBOARD = REPO / "deploy" / "grafana" / "streamproc.json"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


def exported_series() -> set[str]:
    """Every series name the edge's and the worker's /metrics can show."""
    registries = [
        EdgeMetrics().registry,
        WorkerMetrics(WorkerCollector(Counter(), lambda: 0, lambda: {})).registry,
    ]
    return {
        family.name + suffix
        for registry in registries
        for family in registry.collect()
        for suffix in SUFFIXES[family.type]
    }


def named_series(expressions: list[str]) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"streamproc_[a-z_]+", expr)}


def test_alerts_and_dashboard_name_only_exported_metrics():
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    alert_exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    panels = json.loads(DASHBOARD.read_text())["panels"]
    panel_exprs = [target["expr"] for panel in panels for target in panel["targets"]]
    exported = exported_series()
    assert named_series(alert_exprs) <= exported, named_series(alert_exprs) - exported
    assert named_series(panel_exprs) <= exported, named_series(panel_exprs) - exported
    assert len(named_series(panel_exprs)) >= 5  # the dashboard shows edge and worker both


@pytest.mark.parametrize(
    "command", [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"]]
)
def test_promtool_accepts_the_rules_and_their_tests(command):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package `prometheus`; .ci/run installs it)")
    result = subprocess.run(
        [promtool, *command], cwd=PROMETHEUS, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
