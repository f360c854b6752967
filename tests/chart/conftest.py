"""Shared helpers of the chart suite: render chart/dify with a pinned Kubernetes version and validate every object.

Test modules import the helpers with `from conftest import render_chart` (tests/chart is the rootdir, see pytest.ini).
"""

import copy
import functools
import json
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "chart" / "dify"
SCENARIOS = sorted(p.name[: -len("-values.yaml")] for p in (CHART / "ci").glob("*-values.yaml"))
KUBE_VERSION = "1.36.0"
# Helm 4 and the latest Helm 3: every test that runs helm runs with both.
HELMS = ["helm", "helm3"]
LOCAL_SCHEMAS = {
    ("traefik.io/v1alpha1", "Middleware"): Path(__file__).parent / "schemas" / "middleware.traefik.io.v1alpha1.json",
}


class HelmError(Exception):
    """helm exited non-zero; the message is its stderr."""


def helm_binary(helm):
    path = shutil.which(helm)
    if path is None:
        pytest.fail(f"{helm} not on PATH: run `export PATH=$(scripts/test-tools path):$PATH` after `scripts/test-tools install`")
    return path


def scenario(name):
    """Values of chart/dify/ci/<name>-values.yaml."""
    return yaml.safe_load((CHART / "ci" / f"{name}-values.yaml").read_text())


def merge(base, override):
    """Deep merge of two values dicts (override wins), like Helm's coalescing of -f files."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def validate_object(obj):
    """Strict offline schema check of one rendered object (unknown fields are errors)."""
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in LOCAL_SCHEMAS:
        jsonschema.validate(obj, json.loads(LOCAL_SCHEMAS[key].read_text()))
        return
    kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)


def _render(values_yaml, show_only, helm, name, namespace):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(values_yaml)
        f.flush()
        cmd = [helm_binary(helm), "template", name, str(CHART), "--namespace", namespace,
               "--kube-version", KUBE_VERSION, "--values", f.name]
        for template in show_only:
            cmd += ["--show-only", template]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise HelmError(proc.stderr.strip())
    return proc.stdout


def render_chart(values=None, show_only=None, helm="helm", name="dify", namespace="dify", validate=True):
    """Render chart/dify and return its objects (dicts), each validated against the strict schemas.

    Raises HelmError with helm's stderr when rendering fails. Results are cached; callers get their own copy.
    """
    return copy.deepcopy(_objects(yaml.safe_dump(values or {}), tuple(show_only or ()), helm, name, namespace, validate))


@functools.lru_cache(maxsize=256)
def _objects(values_yaml, show_only, helm, name, namespace, validate):
    objects = [doc for doc in yaml.safe_load_all(_render(values_yaml, show_only, helm, name, namespace)) if doc]
    if validate:
        for obj in objects:
            try:
                validate_object(obj)
            except Exception as err:  # name the object: the schema error alone does not say which
                raise AssertionError(f"{obj['kind']}/{obj['metadata']['name']} fails its schema: {err}") from err
    return objects


def render_error(values, helm="helm"):
    """helm's error message for values that must not render."""
    with pytest.raises(HelmError) as info:
        render_chart(values, helm=helm, validate=False)
    return str(info.value)


def find(objects, kind, name=None):
    """Objects of a kind (and name); `name` may be the component suffix after "dify-"."""
    found = [o for o in objects if o["kind"] == kind]
    if name is not None:
        found = [o for o in found if o["metadata"]["name"] in (name, f"dify-{name}")]
    return found


def get(objects, kind, name):
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name}, found {[o['metadata']['name'] for o in found]}"
    return found[0]


def pod_spec(obj):
    """Pod spec of a workload or a Pod."""
    if obj["kind"] == "Pod":
        return obj["spec"]
    return obj["spec"]["template"]["spec"]


WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "Pod")


def workloads(objects):
    return [o for o in objects if o["kind"] in WORKLOAD_KINDS]


def env_of(container):
    return {e["name"]: e for e in container.get("env", [])}


@pytest.fixture(params=HELMS)
def helm(request):
    """Each helm-running test runs once per Helm major."""
    helm_binary(request.param)
    return request.param


@pytest.fixture(params=SCENARIOS)
def scenario_name(request):
    return request.param


def allow_skip():
    return os.environ.get("DIFY_GITOPS_ALLOW_SKIP") == "1"


def run(env, *cmd, stdin=None, check=True):
    """A command with this environment (the kube fixture's); fails the test naming it when it fails."""
    proc = subprocess.run(list(cmd), env=env, input=stdin, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd[:4])}… failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


_PORTS = None


def free_port():
    """A loopback port for a server the test starts next, never one an outgoing connection can hold.

    The kernel gives every outgoing connection its local port from `ip_local_port_range`, the range a bind of port 0
    answers from, so such a port can be taken between the pick and the server's bind. This walks the ports above
    10000 outside that range from a random start (the Rust tests' `dify_gitops_testbed::free_port` does the same).
    """
    global _PORTS
    if _PORTS is None:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        below, above = range(10000, max(low, 10000)), range(max(high + 1, 10000), 65535)
        ports = list(below if len(below) >= len(above) else above)
        assert len(ports) >= 1000, f"ip_local_port_range {low} {high} leaves too few ports for the tests' servers"
        start = secrets.randbelow(len(ports))
        _PORTS = iter(ports[start:] + ports[:start])
    for port in _PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free loopback port outside the ephemeral range")


@pytest.fixture(scope="session")
def kube():
    """Environment (KUBECONFIG) of a local control plane started for this session and stopped after it."""
    script = REPO / "scripts" / "local-cluster"
    if not script.exists():
        if allow_skip():
            pytest.skip("scripts/local-cluster is missing (DIFY_GITOPS_ALLOW_SKIP=1)")
        pytest.fail("scripts/local-cluster is missing: the install tests need the local control plane")
    proc = subprocess.run([str(script), "start", "--watch-pid", str(os.getpid())], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        message = f"scripts/local-cluster start failed: {proc.stderr.strip()}"
        if allow_skip():
            pytest.skip(message)
        pytest.fail(message)
    env = dict(os.environ)
    for line in proc.stdout.splitlines():
        words = shlex.split(line)
        if len(words) == 2 and words[0] == "export":
            key, _, value = words[1].partition("=")
            env[key] = value
    try:
        yield env
    finally:
        subprocess.run([str(script), "stop", env["DIFY_GITOPS_TESTBED_PID"]], cwd=REPO, env=env)
