"""The deployment files are valid: the compose file against the compose specification's JSON
schema, the Helm chart rendered by Helm's own Go library (helm-python-sdk) under several value
sets and every manifest validated against the Kubernetes schemas (kubernetes-validate, strict),
the Prometheus alert rules against the metrics the gateway really exposes, and the image, the
compose file and the chart agree on the user, the port and the commands."""

from __future__ import annotations

import importlib.resources
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "distillguard"
K8S_VERSIONS = ("1.30.0", "1.37.0")  # the oldest we document and the newest the schemas know


def compose() -> dict[str, Any]:
    data = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


# --- compose -------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("check_jsonschema")
    schema_file = (
        importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    # the schema is not a rubber stamp: a typo'd key is refused
    broken = compose()
    broken["services"]["gateway-1"]["depends_onn"] = ["redis"]
    assert list(validator.iter_errors(broken))


def test_compose_services_and_order() -> None:
    services = compose()["services"]
    assert {
        "postgres",
        "redis",
        "prometheus",
        "migrate",
        "keyring",
        "gateway-1",
        "gateway-2",
    } <= set(services)
    for name in ("gateway-1", "gateway-2"):
        gw = services[name]
        assert gw["command"] == ["serve"]
        deps = gw["depends_on"]
        # no replica starts before the schema is migrated and the keyring installed
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["keyring"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
        assert gw["environment"]["DISTILLGUARD_GATEWAY__REPLICAS"] == "2"
    assert services["migrate"]["command"] == ["db", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # the ports of the two replicas differ
    assert services["gateway-1"]["ports"] != services["gateway-2"]["ports"]


def test_compose_files_it_mounts_exist() -> None:
    doc = compose()
    for name, config in doc["configs"].items():
        assert (DEPLOY / config["file"]).is_file(), name
    # the keyring is made by the operator (distillguard keys init), outside the checkout
    assert doc["secrets"]["keyring"]["file"].startswith("${DISTILLGUARD_KEYRING_FILE:?")


def test_prometheus_scrapes_both_replicas_and_loads_the_rules() -> None:
    prom = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    (job,) = prom["scrape_configs"]
    assert job["job_name"] == "distillguard-gateway"  # the name the alert rules select
    targets = job["static_configs"][0]["targets"]
    assert sorted(targets) == ["gateway-1:8080", "gateway-2:8080"]
    mounted = {c["target"] for c in compose()["services"]["prometheus"]["configs"]}
    assert set(prom["rule_files"]) <= mounted


def test_alert_rules_name_only_metrics_the_gateway_exposes() -> None:
    """Every distillguard_gateway_* series an alert reads exists in the gateway's exposition
    (a renamed metric would otherwise silence its alert without a word)."""
    from prometheus_client.parser import text_string_to_metric_families

    from distillguard.gateway.metrics import GatewayMetrics

    m = GatewayMetrics()
    m.requests.labels("/v1/chat/completions", "200").inc()
    m.latency.labels("/v1/chat/completions").observe(0.01)
    m.rejections.labels("rate_limited").inc()
    m.actions.labels("block", "policy").inc()
    m.alerts.labels("delivered").inc()
    m.upstream.observe(0.1)
    m.batch.observe(3)
    m.count_tokens(model="stub-1", status=200, prompt_tokens=1, completion_tokens=1)
    exposed = {
        s.name
        for family in text_string_to_metric_families(m.exposition().decode())
        for s in family.samples
    }
    rules = yaml.safe_load((DEPLOY / "prometheus-alerts.yml").read_text())
    used = set()
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert {"alert", "expr", "labels", "annotations"} <= set(rule), rule.get("alert")
            assert rule["labels"]["severity"] in {"critical", "warning"}
            used |= set(re.findall(r"distillguard_gateway_[a-z_]+", rule["expr"]))
    assert used, "the rules read no gateway metric"
    assert used <= exposed, f"unknown metrics in alerts: {sorted(used - exposed)}"


# --- the image ----------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of deploy/Dockerfile, continuation lines joined."""
    text = (DEPLOY / "Dockerfile").read_text()
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_image_is_multi_stage_slim_non_root_with_a_health_check() -> None:
    ins = dockerfile_instructions()
    froms = [a for i, a in ins if i == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS build") and froms[1].endswith("AS runtime")
    base = next(a for i, a in ins if i == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert "slim" in base
    runtime = ins[[i for i, (w, _) in enumerate(ins) if w == "FROM"][1] :]
    users = [a for i, a in runtime if i == "USER"]
    assert users == ["10001:10001"]
    assert any(i == "HEALTHCHECK" and "/healthz" in a for i, a in runtime)
    # only the built environment is copied from the build stage (no compilers, no sources)
    copies = [a for i, a in runtime if i == "COPY"]
    assert copies == ["--from=build /opt/distillguard /opt/distillguard"]
    assert json.loads(next(a for i, a in runtime if i == "ENTRYPOINT")) == ["distillguard"]
    assert json.loads(next(a for i, a in runtime if i == "CMD")) == ["serve"]


def test_image_build_context_keeps_out_secrets_and_state() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"]  # everything is excluded first
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    assert allowed == {"pyproject.toml", "requirements.lock", "README.md", "src/"}
    copied = [a for i, a in dockerfile_instructions() if i == "COPY" and "--from" not in a]
    for args in copied:
        for src in shlex.split(args)[:-1]:
            assert src in allowed or src + "/" in allowed, src


# --- the chart ----------------------------------------------------------------------------

BASE_VALUES: dict[str, Any] = {
    "store": {"url": "postgresql://dg:secret@db:5432/distillguard"},
    "keyring": {"json": '{"keys": []}'},
}


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    helm = pytest.importorskip("helm_python")
    with helm.Chart.load(str(CHART)) as chart:
        files = chart.render(values, name="dg", namespace="prod")
    docs = []
    for name, text in files.items():
        if not name.endswith((".yaml", ".yml")):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": BASE_VALUES,
    "existing secrets, no HPA, tracing": {
        "existingSecret": "dg-env",
        "keyring": {"existingSecret": "dg-keyring"},
        "autoscaling": {"enabled": False},
        "replicaCount": 3,
        "tracing": {"otlpEndpoint": "http://otel-collector:4318"},
        "upstream": {"kind": "openai", "url": "http://vllm:8000/v1", "apiKey": "k"},
        "extraEnv": [{"name": "DISTILLGUARD_LOGGING__LEVEL", "value": "DEBUG"}],
        "extraConfig": "[console]\nenabled = false\n",
    },
    "no migration job": {**BASE_VALUES, "migration": {"enabled": False}},
}


@pytest.mark.parametrize("label", list(VALUE_SETS))
def test_rendered_chart_is_valid_kubernetes(label: str) -> None:
    kv = pytest.importorskip("kubernetes_validate")
    docs = render(VALUE_SETS[label])
    assert docs
    for version in K8S_VERSIONS:
        for doc in docs:
            try:
                kv.validate(doc, version, strict=True)
            except kv.ValidationError as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{doc['kind']} {doc['metadata']['name']} on {version}: {exc}")


def test_kubernetes_validation_is_not_a_rubber_stamp() -> None:
    kv = pytest.importorskip("kubernetes_validate")
    deployment = by_kind(render(BASE_VALUES))["Deployment"][0]
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["portt"] = (
        8080
    )
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_chart_objects() -> None:
    kinds = by_kind(render(BASE_VALUES))
    assert set(kinds) == {
        "ConfigMap",
        "Secret",
        "Deployment",
        "Service",
        "HorizontalPodAutoscaler",
        "Job",
    }
    (deployment,) = kinds["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (gateway,) = pod["containers"]
    assert gateway["args"] == ["serve"]
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e for e in gateway["env"]}
    # the HPA may run up to maxReplicas: serve is told so, and refuses in-process state
    assert env["DISTILLGUARD_GATEWAY__REPLICAS"]["value"] == "10"
    assert env["DISTILLGUARD_STORE__URL"]["valueFrom"]["secretKeyRef"]["key"] == "store-url"
    # the keyring reaches the gateway through the init container, mode 0600
    (init,) = pod["initContainers"]
    assert init["command"][:3] == ["install", "-m", "0600"]
    (job,) = kinds["Job"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["db", "migrate"]
    assert "pre-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]
    # what the Job needs exists before it: its ConfigMap and env Secret are earlier hooks
    config = kinds["ConfigMap"][0]
    assert int(config["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(
        job["metadata"]["annotations"]["helm.sh/hook-weight"]
    )
    toml = config["data"]["distillguard.toml"]
    assert 'rate_limits = "redis"' in toml and 'replay_cache = "redis-async"' in toml
    secrets = {s["metadata"]["name"]: s for s in kinds["Secret"]}
    assert set(secrets) == {"dg-distillguard-env", "dg-distillguard-keyring"}
    (hpa,) = kinds["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]


def test_chart_config_parses_as_the_gateway_settings(tmp_path: Path) -> None:
    """The ConfigMap's distillguard.toml is a configuration the gateway accepts (with the
    existing-secret value set: upstream openai, extra TOML)."""
    from distillguard.config import load_settings

    kinds = by_kind(render(VALUE_SETS["existing secrets, no HPA, tracing"]))
    toml = kinds["ConfigMap"][0]["data"]["distillguard.toml"]
    path = tmp_path / "distillguard.toml"
    path.write_text(toml)
    settings = load_settings(path)
    assert settings.gateway.rate_limits == "redis"
    assert settings.passport.replay_cache == "redis-async"
    assert settings.gateway.upstream == "openai"
    assert settings.console.enabled is False
    assert "Secret" not in kinds  # existing secrets: the chart makes none
    env = {
        e["name"]: e
        for e in kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["DISTILLGUARD_GATEWAY__REPLICAS"]["value"] == "3"
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == "http://otel-collector:4318"
    assert env["DISTILLGUARD_LOGGING__LEVEL"]["value"] == "DEBUG"


def test_deploy_config_parses_as_the_gateway_settings() -> None:
    from distillguard.config import load_settings

    settings = load_settings(DEPLOY / "distillguard.toml")
    assert settings.gateway.rate_limits == "redis"
    assert settings.passport.replay_cache == "redis-async"
    assert settings.passport.registry == "store"


def test_chart_refuses_to_render_without_a_store_or_a_keyring() -> None:
    helm = pytest.importorskip("helm_python")
    with helm.Chart.load(str(CHART)) as chart:
        with pytest.raises(Exception, match=r"store\.url"):
            chart.render({"keyring": {"json": "{}"}}, name="dg", namespace="prod")
        with pytest.raises(Exception, match="keyring"):
            chart.render({"store": {"url": "postgresql://x"}}, name="dg", namespace="prod")


def test_chart_lints_clean() -> None:
    helm = pytest.importorskip("helm_python")
    findings = helm.lint(str(CHART), values=BASE_VALUES, strict=True)
    assert findings["total_charts_linted"] == 1
    assert findings["errors"] == []
    # severity 1 is INFO (e.g. "icon is recommended"); warnings (2) and errors (4) are not
    assert [m for m in findings["messages"] if m["severity"] > 1] == []
