"""The monitoring profile's Grafana dashboard (deploy/grafana) asks only for metrics the services
expose: every service runs as a process with GATEWAY_METRICS_PORT set, and every metric name in
every panel's query must be served by some service's /metrics (declared families count, even
before their first sample: a labelled counter has none until its first increment)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway_devkit.modem_line import ModemLine
from gateway_devkit.polling import wait_until
from gateway_devkit.processes import Supervisor
from gateway_devkit.scrape import http_get
from gateway_devkit.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "gateway.json"
DATASOURCE = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
#: Series Prometheus makes itself, not a service.
BUILT_IN = {"up"}
#: The sample names each metric type exposes, from its family name.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created", ""),
    "gauge": ("",),
    "info": ("_info",),
}


def dashboard_queries() -> list[str]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [t["expr"] for p in panels for t in p.get("targets", [])]


def metric_names(expr: str) -> set[str]:
    """The metric names in a PromQL expression: identifiers that are not functions, keywords,
    label names (inside by/without/{...}) or range units."""
    stripped = re.sub(r"\{[^}]*\}", "", expr)
    stripped = re.sub(r"\b(by|without)\s*\([^)]*\)", "", stripped)
    stripped = re.sub(r"\[[^\]]*\]", "", stripped)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", stripped))
    return {n for n in names if n not in {"by", "without", "on", "ignoring", "and", "or", "unless"}}


def exposed(text: str) -> set[str]:
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


def test_the_dashboard_is_a_provisioned_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    source = yaml.safe_load(DATASOURCE.read_text(encoding="utf-8"))["datasources"][0]
    assert dashboard["uid"]
    assert dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
    queries = dashboard_queries()
    assert len(queries) >= 20
    assert metric_names('histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b"}[5m])))') == {
        "x_bucket"
    }


@pytest.mark.integration
@pytest.mark.system
def test_every_metric_the_dashboard_queries_is_exposed(
    gateway: Supervisor, modem_line: ModemLine, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("ingest", "decoder", "publisher", "console")}
    for name, command, extra in (
        ("ingest", "gateway-ingest", {"GATEWAY_SERIAL_PORT": modem_line.path}),
        ("decoder", "gateway-decoder", {"GATEWAY_CONSUMER_NAME": "decoder-1"}),
        ("publisher", "gateway-publisher", {}),
        ("console", "gateway-console", {"GATEWAY_CONSOLE_AUTH": "off",
                                        "GATEWAY_CONSOLE_PORT": str(free_port()),
                                        "GATEWAY_CONSOLE_HOST": "127.0.0.1"}),
    ):  # fmt: skip
        gateway.start_service(
            name,
            command,
            GATEWAY_METRICS_PORT=str(ports[name]),
            GATEWAY_HEALTH_FILE=str(tmp_path / f"{name}.health"),
            **extra,
        )
    served: dict[str, set[str]] = {}
    for name, port in ports.items():
        assert wait_until(lambda p=port: http_get(p, "/metrics")[0] == 200, 20), gateway.logs()
        served[name] = exposed(http_get(port, "/metrics")[1])
    everything = set().union(*served.values())
    wanted = {n for expr in dashboard_queries() for n in metric_names(expr)} - BUILT_IN
    assert wanted, "no metric found in the dashboard"
    missing = sorted(wanted - everything)
    assert not missing, f"queried by the dashboard, exposed by no service: {missing}"
    for name in ("gateway_serial_connected", "gateway_mqtt_connected", "gateway_backlog_records"):
        assert name in wanted, f"the dashboard should show {name}"
    assert "process_resident_memory_bytes" in served["console"]
