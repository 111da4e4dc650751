"""deploy/kubernetes: `kubectl kustomize` (kustomize v5: kubectl 1.27 or newer) renders the base
and the overlays; the rendered objects validate in strict mode against the vendored Kubernetes
v1.25, v1.30 and v1.37 schemas, and the ServiceMonitor and PrometheusRule against the Prometheus
Operator's (tests/data, see vendor_schemas.py); kube-prometheus-stack's default selectors pick both
up; a config edit changes the pod template; the NetworkPolicy admits only what
docs/operations.md says; the ConfigMap's config passes `governor check-config`; the
PrometheusRule carries exactly deploy/prometheus/alerts.yml."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy_support import DEPLOY, ROOT, need

K8S = DEPLOY / "kubernetes"
DATA = ROOT / "tests" / "data"
K8S_VERSIONS = ("1.25", "1.30", "1.37")
MIN_KUBECTL = (1, 27)  # kustomize v5.0: `labels`, `patches` with targets, generator behaviours
SCHEMA_FILES = {
    ("v1", "Namespace"): "namespace-v1.json",
    ("v1", "ServiceAccount"): "serviceaccount-v1.json",
    ("v1", "ConfigMap"): "configmap-v1.json",
    ("v1", "Service"): "service-v1.json",
    ("v1", "PersistentVolumeClaim"): "persistentvolumeclaim-v1.json",
    ("apps/v1", "Deployment"): "deployment-apps-v1.json",
    ("apps/v1", "StatefulSet"): "statefulset-apps-v1.json",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicy-networking-v1.json",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudget-policy-v1.json",
    ("rbac.authorization.k8s.io/v1", "Role"): "role-rbac-v1.json",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "rolebinding-rbac-v1.json",
}
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule-monitoring-v1.json",
}
RBAC = {("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding")}
BASE_KINDS = set(SCHEMA_FILES) - RBAC - {("apps/v1", "StatefulSet")}
HA_KINDS = (BASE_KINDS | RBAC | {("apps/v1", "StatefulSet")}) - {
    ("apps/v1", "Deployment"),
    ("v1", "PersistentVolumeClaim"),
}


def kubectl() -> str:
    """kubectl on PATH (`.ci/run` puts its pinned one first), if it has kustomize v5."""
    path = need("kubectl")
    out = subprocess.run(
        [path, "version", "--client", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    info = json.loads(out.stdout or "{}").get("clientVersion", {})
    m = re.match(r"v(\d+)\.(\d+)", info.get("gitVersion", ""))
    have = (int(m.group(1)), int(m.group(2))) if m else (0, 0)
    if have < MIN_KUBECTL:
        msg = (
            f"{path} is kubectl {info.get('gitVersion', '?')}; the manifests need "
            f"{MIN_KUBECTL[0]}.{MIN_KUBECTL[1]}+ (bash .ci/run installs the pinned one)"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def render(path: Path) -> list[dict]:
    out = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def copy_tree(tmp: Path) -> Path:
    """deploy/kubernetes in a scratch directory, to render edited copies."""
    dst = tmp / "kubernetes"
    shutil.copytree(K8S, dst)
    return dst


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    return render(K8S / "overlays" / "example")


@pytest.fixture(scope="module")
def ha() -> list[dict]:
    return render(K8S / "overlays" / "ha")


def by_kind(objs: list[dict], kind: str) -> dict:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def validator(version: str, key: tuple[str, str]) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    from referencing import Registry, Resource

    if key in CRD_SCHEMAS:
        schema = json.loads((DATA / "prometheus-operator-schemas" / CRD_SCHEMAS[key]).read_text())
        return jsonschema.Draft202012Validator(schema)
    root = DATA / f"k8s-schemas-v{version}-strict"
    defs = json.loads((root / "_definitions.json").read_text())
    registry = Registry().with_resource(defs["$id"], Resource.from_contents(defs))
    schema = json.loads((root / SCHEMA_FILES[key]).read_text())
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema, registry=registry)


def schema_errors(objs: list[dict], version: str) -> list[str]:
    errors = []
    for obj in objs:
        v = validator(version, (obj["apiVersion"], obj["kind"]))
        for e in sorted(v.iter_errors(obj), key=lambda e: list(e.path))[:5]:
            where = "/".join(map(str, e.path))
            errors.append(f"{obj['kind']}/{obj['metadata']['name']}: {where}: {e.message[:200]}")
    return errors


def test_base_renders_too():
    objs = render(K8S / "base")
    assert {(o["apiVersion"], o["kind"]) for o in objs} == BASE_KINDS | set(CRD_SCHEMAS)
    for kind in ("ServiceMonitor", "PrometheusRule"):  # the chart's usual release name
        assert kube_prometheus_stack_selects(by_kind(objs, kind), "kube-prometheus-stack")


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_object_validates_strictly(rendered, version):
    """Unknown fields are errors (as with `kubectl apply --validate=strict`), per version."""
    assert {(o["apiVersion"], o["kind"]) for o in rendered} == BASE_KINDS | set(CRD_SCHEMAS)
    assert schema_errors(rendered, version) == []


BAD_FIELDS = [
    ("Deployment", ["spec", "replicas"], "one"),
    ("Deployment", ["spec", "template", "spec", "containers", 0, "securityContxt"], {}),
    ("Deployment", ["spec", "template", "spec", "containers", 0, "ports", 0, "port"], 9108),
    ("NetworkPolicy", ["spec", "egress", 0, "to", 0, "podSelector", "labels"], {}),
    ("ServiceMonitor", ["spec", "endpoints", 0, "honourLabels"], True),
    ("ServiceMonitor", ["spec", "endpoints", 0, "interval"], "15 seconds"),
    ("ServiceMonitor", ["spec", "selector", "matchLabel"], {}),
    ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "for"], 5),
    ("PrometheusRule", ["spec", "groups", 0, "rules", 0, "severity"], "critical"),
    ("PrometheusRule", ["spec", "groups", 0, "limits"], 1),
]


@pytest.mark.parametrize(("kind", "path", "value"), BAD_FIELDS)
def test_schema_validation_catches_a_bad_field(rendered, kind, path, value):
    """The vendored schemas are strict: an unknown or mistyped field is an error, in the
    Kubernetes kinds and in the Operator's, for every version."""
    obj = json.loads(json.dumps(by_kind(rendered, kind)))
    node = obj
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    for version in K8S_VERSIONS:
        assert schema_errors([obj], version), (version, path)


def match_labels(selector: dict, labels: dict) -> bool:
    """A LabelSelector's matchLabels/matchExpressions (In, NotIn, Exists, DoesNotExist)."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for e in selector.get("matchExpressions", []):
        key, op, vals = e["key"], e["operator"], e.get("values", [])
        ok = {
            "In": key in labels and labels[key] in vals,
            "NotIn": key not in labels or labels[key] not in vals,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def kube_prometheus_stack_selects(obj: dict, release: str) -> bool:
    """The chart's defaults (serviceMonitorSelectorNilUsesHelmValues and
    ruleSelectorNilUsesHelmValues true): selector matchLabels {release: <release name>},
    namespace selector {} (every namespace)."""
    selector = {"matchLabels": {"release": release}}
    namespace_selector: dict = {}
    ns_labels = {"kubernetes.io/metadata.name": obj["metadata"]["namespace"]}
    return match_labels(selector, obj["metadata"].get("labels", {})) and match_labels(
        namespace_selector, ns_labels
    )


def knob(overlay: Path) -> str:
    (op,) = yaml.safe_load((overlay / "kube-prometheus-stack.yaml").read_text())
    assert op["path"] == "/metadata/labels/release"
    return op["value"]


def test_kube_prometheus_stack_selects_the_servicemonitor_and_rules(rendered):
    release = knob(K8S / "overlays" / "example")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        obj = by_kind(rendered, kind)
        assert kube_prometheus_stack_selects(obj, release), obj["metadata"]
        assert not kube_prometheus_stack_selects(obj, release + "-other")


def test_the_release_knob_relabels_both(tmp_path):
    tree = copy_tree(tmp_path)
    knob_file = tree / "overlays" / "example" / "kube-prometheus-stack.yaml"
    text = knob_file.read_text()
    knob_file.write_text(text.replace("value: kube-prometheus-stack", "value: mon"))
    objs = render(tree / "overlays" / "example")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        obj = by_kind(objs, kind)
        assert kube_prometheus_stack_selects(obj, "mon")
        assert not kube_prometheus_stack_selects(obj, "kube-prometheus-stack")
    # the knob touches only the Operator's objects
    others = [o for o in objs if o["kind"] not in {"ServiceMonitor", "PrometheusRule"}]
    assert all("release" not in o["metadata"].get("labels", {}) for o in others)


def test_servicemonitor_selects_governor_only(rendered):
    sm = by_kind(rendered, "ServiceMonitor")
    svc = by_kind(rendered, "Service")
    ep = sm["spec"]["endpoints"][0]
    assert ep["port"] in {p["name"] for p in svc["spec"]["ports"]}
    assert ep["path"] == "/metrics"
    assert ep["honorLabels"] is True  # Governor's namespace/endpoint labels must survive
    assert "namespaceSelector" not in sm["spec"]  # its own namespace only
    assert sm["metadata"]["namespace"] == svc["metadata"]["namespace"]
    sel = sm["spec"]["selector"]
    assert match_labels(sel, svc["metadata"]["labels"])
    # a neighbour in a shared namespace: ingress-nginx's controller Service
    nginx = {
        "app.kubernetes.io/component": "controller",
        "app.kubernetes.io/name": "ingress-nginx",
        "app.kubernetes.io/part-of": "ingress-nginx",
    }
    assert not match_labels(sel, nginx)


def test_prometheusrule_is_well_formed(rendered):
    groups = by_kind(rendered, "PrometheusRule")["spec"]["groups"]
    assert groups, "no rule groups"
    for g in groups:
        for r in g["rules"]:
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


def workload(objs: list[dict]) -> dict:
    (w,) = [o for o in objs if o["kind"] in {"Deployment", "StatefulSet"}]
    return w


def config_volume(objs: list[dict]) -> str:
    pod = workload(objs)["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/etc/governor")
    vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    return vol["configMap"]["name"]


def test_a_config_edit_changes_the_pod_template(rendered, tmp_path):
    """configMapGenerator: the ConfigMap's name carries a hash of the content and the Deployment
    refers to it by that name, so `kubectl apply -k` after an edit rolls the pod."""
    cm = by_kind(rendered, "ConfigMap")
    assert re.fullmatch(r"governor-config-[a-z0-9]{10}", cm["metadata"]["name"])
    assert config_volume(rendered) == cm["metadata"]["name"]
    tree = copy_tree(tmp_path)
    cfg = tree / "overlays" / "example" / "governor.yaml"
    cfg.write_text(cfg.read_text().replace("tick_interval_s: 15", "tick_interval_s: 30"))
    edited = render(tree / "overlays" / "example")
    new = by_kind(edited, "ConfigMap")
    assert "tick_interval_s: 30" in new["data"]["governor.yaml"]
    assert new["metadata"]["name"] != cm["metadata"]["name"]
    assert config_volume(edited) == new["metadata"]["name"]
    before = workload(rendered)["spec"]["template"]
    after = workload(edited)["spec"]["template"]
    assert before != after
    # and an unchanged config renders the same name (no spurious rollouts)
    assert config_volume(render(K8S / "overlays" / "example")) == cm["metadata"]["name"]


def test_the_overlay_config_replaces_the_base_config(rendered):
    data = by_kind(rendered, "ConfigMap")["data"]
    assert list(data) == ["governor.yaml"]
    overlay = (K8S / "overlays" / "example" / "governor.yaml").read_text()
    assert yaml.safe_load(data["governor.yaml"]) == yaml.safe_load(overlay)


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
        assert "app.kubernetes.io/name" in sel(by_kind(rendered, kind)), kind


def peer_allows(peer: dict, ns_labels: dict, pod_labels: dict, *, same_ns: bool = False) -> bool:
    """One NetworkPolicyPeer: no namespaceSelector means the policy's own namespace; an ipBlock
    admits no pod."""
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        ns_ok = match_labels(peer["namespaceSelector"], ns_labels)
    else:
        ns_ok = same_ns
    return ns_ok and match_labels(peer.get("podSelector", {}), pod_labels)


def rule_ports(rule: dict, named: dict[str, int]) -> set[tuple[int, str]]:
    return {(named.get(p["port"], p["port"]), p.get("protocol", "TCP")) for p in rule["ports"]}


def test_networkpolicy_dns_to_kube_dns_https_out_metrics_in_from_prometheus(rendered):
    np = by_kind(rendered, "NetworkPolicy")["spec"]
    assert set(np["policyTypes"]) == {"Ingress", "Egress"}
    (c,) = by_kind(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert all(rule.get("ports") for rule in np["egress"] + np["ingress"])  # no any-port rule

    kube_system = {"kubernetes.io/metadata.name": "kube-system"}
    monitoring = {"kubernetes.io/metadata.name": "monitoring"}
    coredns = {"k8s-app": "kube-dns", "app.kubernetes.io/name": "coredns"}
    other_pod = {"app": "dns-spoofer"}
    prometheus = {"app.kubernetes.io/name": "prometheus", "prometheus": "kps-prometheus"}

    # DNS: only to kube-dns pods in kube-system
    dns = [r for r in np["egress"] if (53, "UDP") in rule_ports(r, named)]
    assert dns
    assert all(rule_ports(r, named) == {(53, "UDP"), (53, "TCP")} for r in dns)
    for r in dns:
        peers = r.get("to")
        assert peers, "DNS to any destination"
        assert any(peer_allows(p, kube_system, coredns) for p in peers)
        assert not any(peer_allows(p, kube_system, other_pod) for p in peers)
        assert not any(peer_allows(p, {"kubernetes.io/metadata.name": "x"}, coredns) for p in peers)
    # everything else out: 443/TCP only
    rest = [r for r in np["egress"] if r not in dns]
    assert {pp for r in rest for pp in rule_ports(r, named)} == {(443, "TCP")}

    # in: the metrics port, from Prometheus pods in the labelled namespace only
    (ing,) = np["ingress"]
    assert rule_ports(ing, named) == {(9108, "TCP")}
    peers = ing.get("from")
    assert peers, "metrics open to every pod of every namespace"
    assert any(peer_allows(p, monitoring, prometheus) for p in peers)
    assert not any(peer_allows(p, monitoring, other_pod) for p in peers)
    default_ns = {"kubernetes.io/metadata.name": "default"}
    assert not any(peer_allows(p, default_ns, prometheus) for p in peers)
    own_ns = {"kubernetes.io/metadata.name": "governor-example"}
    assert not any(peer_allows(p, own_ns, other_pod, same_ns=True) for p in peers)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_ha_overlay_validates_strictly(ha, version):
    counts: dict[tuple[str, str], int] = {}
    for o in ha:
        key = (o["apiVersion"], o["kind"])
        counts[key] = counts.get(key, 0) + 1
    assert set(counts) == HA_KINDS | set(CRD_SCHEMAS)
    assert counts[("networking.k8s.io/v1", "NetworkPolicy")] == 2
    assert schema_errors(ha, version) == []


def test_ha_statefulset_is_the_base_pod_plus_election(ha, rendered):
    """Two replicas, each with its own state volume; the pod is the base Deployment's with
    exactly these additions: POD_NAME (the Lease identity), the API token, the spread."""
    sts = by_kind(ha, "StatefulSet")["spec"]
    assert sts["replicas"] == 2
    assert sts["updateStrategy"]["type"] == "RollingUpdate"
    assert sts["serviceName"] == by_kind(ha, "Service")["metadata"]["name"]
    pod = json.loads(json.dumps(sts["template"]))
    base = json.loads(json.dumps(by_kind(render(K8S / "base"), "Deployment")["spec"]["template"]))
    spec, (c,) = pod["spec"], pod["spec"]["containers"]
    assert spec.pop("automountServiceAccountToken") is True
    assert base["spec"].pop("automountServiceAccountToken") is False
    assert spec.pop("topologySpreadConstraints")[0]["topologyKey"] == "kubernetes.io/hostname"
    (pod_name,) = [e for e in c["env"] if e["name"] == "POD_NAME"]
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    c["env"].remove(pod_name)
    (claim,) = sts["volumeClaimTemplates"]
    state_mount = next(m for m in c["volumeMounts"] if m["mountPath"] == "/var/lib/governor")
    assert claim["metadata"]["name"] == state_mount["name"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    base["spec"]["volumes"] = [v for v in base["spec"]["volumes"] if v["name"] != "state"]
    assert c["image"] == "registry.example.com/platform/governor:0.1.0"
    for p in (pod, base):  # the config's hashed name and the image differ by overlay
        p["spec"]["containers"][0].pop("image")
        for v in p["spec"]["volumes"]:
            if "configMap" in v:
                v["configMap"].pop("name")
    assert pod == base
    assert config_volume(ha) == by_kind(ha, "ConfigMap")["metadata"]["name"]


def test_ha_rbac_is_get_create_update_on_the_lease_in_its_namespace(ha):
    cfg = yaml.safe_load(by_kind(ha, "ConfigMap")["data"]["governor.yaml"])
    assert cfg["election"]["enabled"] is True
    assert cfg["election"].get("namespace") is None  # the pod's own
    lease = cfg["election"].get("lease_name", "governor")
    ns = by_kind(ha, "Namespace")["metadata"]["name"]
    role = by_kind(ha, "Role")
    assert role["metadata"]["namespace"] == ns
    grants: dict[str, set[str | None]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["coordination.k8s.io"]
        assert rule["resources"] == ["leases"]
        for verb in rule["verbs"]:
            for name in rule.get("resourceNames", [None]):
                grants.setdefault(verb, set()).add(name)
    # what controller/daemon/election.py does: GET, POST (create) and PUT (update) of the Lease
    assert grants == {"create": {None}, "get": {lease}, "update": {lease}}
    rb = by_kind(ha, "RoleBinding")
    assert rb["metadata"]["namespace"] == ns
    assert rb["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    sa = by_kind(ha, "ServiceAccount")
    pod = by_kind(ha, "StatefulSet")["spec"]["template"]["spec"]
    assert rb["subjects"] == [
        {"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": ns}
    ]
    assert pod["serviceAccountName"] == sa["metadata"]["name"]


def test_ha_networkpolicies_add_only_the_api_server_port(ha, rendered):
    base_np = by_kind(rendered, "NetworkPolicy")["spec"]
    nps = {o["metadata"]["name"]: o["spec"] for o in ha if o["kind"] == "NetworkPolicy"}
    assert nps.pop("governor") == base_np
    ((_, extra),) = nps.items()
    assert extra["policyTypes"] == ["Egress"]
    assert "ingress" not in extra
    assert [p for r in extra["egress"] for p in r["ports"]] == [{"port": 6443, "protocol": "TCP"}]
    labels = by_kind(ha, "StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert extra["podSelector"]["matchLabels"].items() <= labels.items()
    for kind in ("Service", "PodDisruptionBudget"):
        sel = by_kind(ha, kind)["spec"]
        sel = sel["selector"].get("matchLabels", sel["selector"])
        assert sel.items() <= labels.items(), kind


def test_ha_monitoring_is_the_base_with_the_knob(ha):
    release = knob(K8S / "overlays" / "ha")
    for kind in ("ServiceMonitor", "PrometheusRule"):
        assert kube_prometheus_stack_selects(by_kind(ha, kind), release)


def test_ha_config_edit_rolls_the_statefulset(ha, tmp_path):
    tree = copy_tree(tmp_path)
    cfg = tree / "overlays" / "ha" / "governor.yaml"
    cfg.write_text(cfg.read_text().replace("tick_interval_s: 15", "tick_interval_s: 20"))
    edited = render(tree / "overlays" / "ha")
    assert config_volume(edited) != config_volume(ha)
    assert config_volume(edited) == by_kind(edited, "ConfigMap")["metadata"]["name"]


def test_configmap_config_passes_check_config(rendered, tmp_path):
    for name, text in (
        ("overlay", by_kind(rendered, "ConfigMap")["data"]["governor.yaml"]),
        ("ha", (K8S / "overlays" / "ha" / "governor.yaml").read_text()),
        ("base", (K8S / "base" / "governor.yaml").read_text()),
    ):
        p = tmp_path / f"{name}.yaml"
        p.write_text(text)
        out = subprocess.run(
            [sys.executable, "-m", "controller.cli", "check-config", "-c", str(p)],
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
        "metadata": {"name": "governor", "labels": {"release": "kube-prometheus-stack"}},
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
