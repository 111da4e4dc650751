"""deploy/kubernetes: `kubectl kustomize` renders the example overlay; the rendered objects
validate against the Kubernetes v1.30 JSON schemas (vendored in tests/data) and meet the security
and rollout requirements; the ConfigMap's config passes `governor check-config`; the
PrometheusRule carries exactly deploy/prometheus/alerts.yml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.deploy_support import DEPLOY, ROOT, need

K8S = DEPLOY / "kubernetes"
SCHEMAS = ROOT / "tests" / "data" / "k8s-schemas-v1.30-strict"
SCHEMA_FILES = {
    ("v1", "Namespace"): "namespace-v1.json",
    ("v1", "ServiceAccount"): "serviceaccount-v1.json",
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaim-v1.json",
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicy-networking-v1.json",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudget-policy-v1.json",
}
CRDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
}


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    kubectl = need("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "overlays" / "example")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def test_base_renders_too():
    kubectl = need("kubectl")
    out = subprocess.run(
        [kubectl, "kustomize", str(K8S / "base")], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr


def test_every_object_validates_against_the_kubernetes_schemas(rendered):
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource

    defs = json.loads((SCHEMAS / "_definitions.json").read_text())
    registry = Registry().with_resource(defs["$id"], Resource.from_contents(defs))
    kinds = {(o["apiVersion"], o["kind"]) for o in rendered}
    assert set(SCHEMA_FILES) | CRDS == kinds, kinds
    for obj in rendered:
        key = (obj["apiVersion"], obj["kind"])
        if key in CRDS:
            continue
        schema = json.loads((SCHEMAS / SCHEMA_FILES[key]).read_text())
        schema.setdefault("$id", f"https://kubernetes.io/api/{SCHEMA_FILES[key]}")
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        errors = sorted(cls(schema, registry=registry).iter_errors(obj), key=lambda e: list(e.path))
        assert not errors, f"{obj['kind']}/{obj['metadata']['name']}: " + "; ".join(
            f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors[:5]
        )


def test_schema_validation_catches_a_bad_field(rendered):
    """The vendored schemas are strict: an unknown or mistyped field is an error."""
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource

    defs = json.loads((SCHEMAS / "_definitions.json").read_text())
    registry = Registry().with_resource(defs["$id"], Resource.from_contents(defs))
    schema = json.loads((SCHEMAS / SCHEMA_FILES[("apps/v1", "Deployment")]).read_text())
    schema.setdefault("$id", "https://kubernetes.io/api/deployment-apps-v1.json")
    v = jsonschema.Draft202012Validator(schema, registry=registry)
    dep = json.loads(json.dumps(by_kind(rendered, "Deployment")))
    dep["spec"]["replicas"] = "one"
    dep["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    assert len(list(v.iter_errors(dep))) >= 2


def test_custom_resources_are_well_formed(rendered):
    sm = by_kind(rendered, "ServiceMonitor")
    svc = by_kind(rendered, "Service")
    ep = sm["spec"]["endpoints"][0]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert ep["path"] == "/metrics"
    assert ep["honorLabels"] is True  # Governor's namespace/endpoint labels must survive
    sel = sm["spec"]["selector"]["matchLabels"]
    assert sel.items() <= svc["metadata"]["labels"].items()
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"]

    rule = by_kind(rendered, "PrometheusRule")
    groups = rule["spec"]["groups"]
    assert groups, "no rule groups"
    for g in groups:
        assert set(g) <= {"name", "rules", "interval"}
        for r in g["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations"}
            assert r["alert"]
            assert r["expr"]
            assert {"summary", "description", "runbook_url"} <= set(r["annotations"])


def test_prometheusrule_carries_exactly_the_alert_file():
    rule = yaml.safe_load((K8S / "base" / "prometheusrule.yaml").read_text())
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    assert rule["spec"]["groups"] == alerts["groups"], (
        "deploy/kubernetes/base/prometheusrule.yaml is out of date: "
        "python -m tests.test_deploy_kubernetes regenerates it"
    )


def test_deployment_is_hardened_single_replica_recreate_with_probes(rendered):
    dep = by_kind(rendered, "Deployment")
    spec = dep["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"]["type"] == "Recreate"
    pod = spec["template"]["spec"]
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] != 0
    assert psc["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"]
    assert c["resources"]["limits"]["memory"]
    assert c["image"] == "registry.example.com/platform/governor:0.1.0"
    assert c["args"][:1] == ["run"]
    # the token comes from a Secret, never from the manifest
    (tok,) = [e for e in c["env"] if e["name"] == "HF_TOKEN"]
    assert "secretKeyRef" in tok["valueFrom"]
    assert "value" not in tok
    # volumes: config from the ConfigMap, state on the PVC, a writable /tmp
    vols = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    cm = by_kind(rendered, "ConfigMap")
    pvc = by_kind(rendered, "PersistentVolumeClaim")
    assert vols[mounts["/etc/governor"]]["configMap"]["name"] == cm["metadata"]["name"]
    assert (
        vols[mounts["/var/lib/governor"]]["persistentVolumeClaim"]["claimName"]
        == (pvc["metadata"]["name"])
    )
    assert "/tmp" in mounts
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    cfg = yaml.safe_load(cm["data"]["governor.yaml"])
    assert cfg["server"]["listen"].endswith(f":{ports['metrics']}")
    assert cfg["state"]["path"].startswith("/var/lib/governor/")
    sa = by_kind(rendered, "ServiceAccount")
    assert pod["serviceAccountName"] == sa["metadata"]["name"]
    ns = by_kind(rendered, "Namespace")["metadata"]["name"]
    assert all(o["metadata"].get("namespace", ns) == ns for o in rendered)


def test_selectors_match_the_pod(rendered):
    labels = by_kind(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind, sel in (
        ("Service", lambda o: o["spec"]["selector"]),
        ("NetworkPolicy", lambda o: o["spec"]["podSelector"]["matchLabels"]),
        ("PodDisruptionBudget", lambda o: o["spec"]["selector"]["matchLabels"]),
    ):
        assert sel(by_kind(rendered, kind)).items() <= labels.items(), kind


def test_networkpolicy_allows_dns_and_https_egress_only(rendered):
    np = by_kind(rendered, "NetworkPolicy")
    assert set(np["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ports = {(p["port"], p["protocol"]) for rule in np["spec"]["egress"] for p in rule["ports"]}
    assert ports == {(53, "UDP"), (53, "TCP"), (443, "TCP")}
    assert all("ports" in rule for rule in np["spec"]["egress"])  # no allow-all rule


def test_configmap_config_passes_check_config(rendered, tmp_path):
    for name, objs in (("overlay", rendered), ("base", None)):
        if objs is None:
            cm = yaml.safe_load((K8S / "base" / "configmap.yaml").read_text())
        else:
            cm = by_kind(objs, "ConfigMap")
        p = tmp_path / f"{name}.yaml"
        p.write_text(cm["data"]["governor.yaml"])
        out = subprocess.run(
            [sys.executable, "-m", "controller.cli", "check-config", str(p)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
        )
        assert out.returncode == 0, f"{name}: {out.stderr}"
        assert "OK" in out.stdout


def _regenerate() -> None:  # pragma: no cover - a maintenance helper
    class Dumper(yaml.SafeDumper):
        pass

    def block(d: yaml.SafeDumper, v: str) -> yaml.Node:
        return d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None)

    Dumper.add_representer(str, block)
    groups = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())["groups"]
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "governor"},
        "spec": {"groups": groups},
    }
    head = (
        "# Generated from deploy/prometheus/alerts.yml; tests/test_deploy_kubernetes.py keeps "
        "the two equal.\n# Regenerate: python -m tests.test_deploy_kubernetes\n"
    )
    body = yaml.dump(doc, Dumper=Dumper, sort_keys=False, width=1000)
    Path(K8S / "base" / "prometheusrule.yaml").write_text(head + body)


if __name__ == "__main__":  # pragma: no cover
    _regenerate()
