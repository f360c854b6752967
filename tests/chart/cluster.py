"""The local kube-apiserver for the chart suite: commands against it and what the install and upgrade areas share.

The session's control plane is the `kube` fixture of conftest.py; these helpers take its environment.
"""

import json
import os
import uuid

import yaml

from conftest import CHART, helm_binary, run


def kubectl(kube, *args, **kw):
    return run(kube, "kubectl", *args, **kw)


def namespace(kube, level):
    """A fresh namespace enforcing Pod Security `level`."""
    name = f"dify-{level}-{uuid.uuid4().hex[:6]}"
    kubectl(kube, "create", "namespace", name)
    kubectl(kube, "label", "namespace", name, f"pod-security.kubernetes.io/enforce={level}",
            "pod-security.kubernetes.io/enforce-version=latest")
    return name


def helm_run(kube, helm, verb, ns, values, *extra, check=True):
    """`helm VERB dify chart/dify -n NS` with these values, hooks skipped (no pod runs here)."""
    with open(os.path.join(kube.get("TMPDIR", "/tmp"), f"values-{uuid.uuid4().hex}.yaml"), "w") as f:
        yaml.safe_dump(values, f)
    try:
        return run(kube, helm_binary(helm), verb, "dify", str(CHART), "--namespace", ns, "--values", f.name,
                   "--no-hooks", "--timeout", "60s", *extra, check=check)
    finally:
        os.unlink(f.name)


def as_pod(obj, ns):
    """The pod a workload would create, as a Pod object (what Pod Security admission judges)."""
    if obj["kind"] == "Pod":
        pod = json.loads(json.dumps(obj))
    else:
        template = obj["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": dict(template.get("metadata", {})),
               "spec": template["spec"]}
        # The StatefulSet controller adds one volume per claim template, named after it.
        for claim in obj["spec"].get("volumeClaimTemplates", []):
            pod["spec"].setdefault("volumes", []).append({"name": claim["metadata"]["name"], "persistentVolumeClaim": {
                "claimName": f"{claim['metadata']['name']}-{obj['metadata']['name']}-0"}})
    pod["metadata"]["name"] = f"{obj['metadata']['name']}-psa-check"
    pod["metadata"]["namespace"] = ns
    return pod


def dry_run_pod(kube, pod):
    return kubectl(kube, "create", "--dry-run=server", "-o", "name", "-f", "-", stdin=json.dumps(pod), check=False)
