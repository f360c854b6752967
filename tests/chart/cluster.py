"""The local kube-apiserver for the chart suite: commands against it and what the install and upgrade areas share.

The session's control plane is the `kube` fixture of conftest.py; these helpers take its environment.
"""

import json
import os
import uuid
from pathlib import Path

import yaml

from conftest import CHART, helm_binary, merge, run, scenario, validate_object


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


def with_tag(name, tag, *more):
    """The values of scenario `name` with images.dify.tag set to `tag`, then `more` merged over them."""
    values = merge(scenario(name), {"images": {"dify": {"tag": tag}}})
    for extra in more:
        values = merge(values, extra)
    return values


def render_upgrade(kube, helm, ns, values, check=True):
    """The upgrade's objects as Helm renders them against the installed release (lookup answers), each validated
    against the strict schemas; or helm's error when check is False and it fails."""
    path = Path(kube.get("TMPDIR", "/tmp")) / f"values-{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(values))
    try:
        proc = run(kube, helm_binary(helm), "template", "dify", str(CHART), "--namespace", ns, "--values", str(path),
                   "--dry-run=server", "--is-upgrade", check=check)
    finally:
        path.unlink()
    if proc.returncode != 0:
        return proc.stderr
    objects = [o for o in yaml.safe_load_all(proc.stdout) if o]
    for obj in objects:
        validate_object(obj)
    return objects


def installed(kube, helm, name="v1.13.3"):
    """A fresh namespace (Pod Security restricted) holding a release of scenario `name`, hooks skipped."""
    ns = namespace(kube, "restricted")
    helm_run(kube, helm, "install", ns, scenario(name))
    return ns
