"""Regenerate the JSON schemas vendored in tests/data for tests/test_deploy_kubernetes.py.

Kubernetes (strict: no unknown fields), per version, from the `kubernetes-validate` wheel on PyPI:
    pip download --no-deps kubernetes-validate==1.37.0 && unzip kubernetes_validate-*.whl -d kv
    python tests/data/vendor_schemas.py k8s kv/kubernetes_validate/kubernetes-json-schema
Prometheus Operator custom resources, from the models `cloudcoil-models-prometheus-operator`
(PyPI) generates from the operator's CRDs, made strict the same way (unknown fields rejected):
    pip install cloudcoil-models-prometheus-operator==0.80.1.0
    python tests/data/vendor_schemas.py crds
Only the kinds Governor deploys are kept, and each `_definitions.json` is pruned to what they use.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
K8S_VERSIONS = ("1.25", "1.30", "1.37")
K8S_KINDS = (
    "namespace-v1.json",
    "serviceaccount-v1.json",
    "configmap-v1.json",
    "service-v1.json",
    "persistentvolumeclaim-v1.json",
    "deployment-apps-v1.json",
    "statefulset-apps-v1.json",
    "networkpolicy-networking-v1.json",
    "poddisruptionbudget-policy-v1.json",
    "role-rbac-v1.json",
    "rolebinding-rbac-v1.json",
)
REF = re.compile(r'"\$ref":\s*"(?:/api/_definitions\.json)?#/\$defs/([^"]+)"')


def dump(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def k8s(src_root: Path) -> None:
    for version in K8S_VERSIONS:
        src = src_root / f"v{version}.0-local-strict"
        out = HERE / f"k8s-schemas-v{version}-strict"
        out.mkdir(exist_ok=True)
        defs = json.loads((src / "_definitions.json").read_text())
        wanted: set[str] = set()
        todo: list[str] = []
        for name in K8S_KINDS:
            schema = json.loads((src / name).read_text())
            schema.setdefault("$id", f"https://kubernetes.io/api/{name}")
            text = dump(schema)
            todo += REF.findall(text)
            (out / name).write_text(text)
        while todo:
            d = todo.pop()
            if d not in wanted:
                wanted.add(d)
                todo += REF.findall(dump(defs["$defs"][d]))
        pruned = {**defs, "$defs": {k: v for k, v in defs["$defs"].items() if k in wanted}}
        (out / "_definitions.json").write_text(dump(pruned))


def strict(node: Any) -> Any:
    """Reject unknown fields, as `kubectl apply --validate=strict` does for a CRD."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for v in node.values():
            strict(v)
    elif isinstance(node, list):
        for v in node:
            strict(v)
    return node


def crds() -> None:
    from importlib.metadata import version

    from cloudcoil.models.prometheus_operator import v1

    out = HERE / "prometheus-operator-schemas"
    out.mkdir(exist_ok=True)
    for model in (v1.ServiceMonitor, v1.PrometheusRule):
        schema = strict(model.model_json_schema(by_alias=True))
        schema["$comment"] = "cloudcoil-models-prometheus-operator " + version(
            "cloudcoil-models-prometheus-operator"
        )
        (out / f"{model.__name__.lower()}-monitoring-v1.json").write_text(dump(schema))


if __name__ == "__main__":  # pragma: no cover - a maintenance helper
    if sys.argv[1:2] == ["k8s"]:
        k8s(Path(sys.argv[2]))
    elif sys.argv[1:2] == ["crds"]:
        crds()
    else:
        sys.exit(__doc__)
