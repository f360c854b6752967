"""Security > Pods: Pod Security "restricted" everywhere but the documented sandbox exception (baseline)."""

import pytest

from conftest import CHART, pod_spec, render_chart, scenario, workloads

# The sandbox chroots each code run and drops to an unprivileged uid: root with these capabilities (values.yaml,
# templates/sandbox-deployment.yaml). Everything else must meet "restricted".
BASELINE_ONLY = {"dify-sandbox"}
BASELINE_CAPS = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
                 "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}


def all_containers(spec):
    return spec.get("initContainers", []) + spec["containers"]


def restricted_violations(spec):
    """The checks of Pod Security "restricted" (v1.36) that a pod spec can fail."""
    out = []
    psc = spec.get("securityContext", {})
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(key):
            out.append(key)
    out += [f"hostPath volume {v['name']}" for v in spec.get("volumes", []) if "hostPath" in v]
    for c in all_containers(spec):
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"{c['name']}: allowPrivilegeEscalation")
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            out.append(f"{c['name']}: capabilities not dropped")
        extra = set(sc.get("capabilities", {}).get("add", [])) - {"NET_BIND_SERVICE"}
        if extra:
            out.append(f"{c['name']}: adds {sorted(extra)}")
        if not sc.get("runAsNonRoot", psc.get("runAsNonRoot")):
            out.append(f"{c['name']}: runAsNonRoot")
        if sc.get("runAsUser", psc.get("runAsUser")) == 0:
            out.append(f"{c['name']}: runAsUser 0")
        seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            out.append(f"{c['name']}: seccompProfile")
    return out


def baseline_violations(spec):
    out = [f"hostPath volume {v['name']}" for v in spec.get("volumes", []) if "hostPath" in v]
    for c in all_containers(spec):
        sc = c.get("securityContext", {})
        if sc.get("privileged"):
            out.append(f"{c['name']}: privileged")
        extra = set(sc.get("capabilities", {}).get("add", [])) - BASELINE_CAPS
        if extra:
            out.append(f"{c['name']}: adds {sorted(extra)}")
    return out


def test_every_pod_meets_pod_security_restricted_except_the_sandbox(scenario_name):
    for o in workloads(render_chart(scenario(scenario_name))):
        name = o["metadata"]["name"]
        if name in BASELINE_ONLY:
            assert baseline_violations(pod_spec(o)) == [], name
            assert restricted_violations(pod_spec(o)), f"{name} now meets restricted: drop it from BASELINE_ONLY"
        else:
            assert restricted_violations(pod_spec(o)) == [], name


def test_sandbox_holds_exactly_what_it_needs_and_kill_to_end_a_snippet_past_its_timeout():
    # Root in the sandbox chroots (SYS_CHROOT), prepares the jail (CHOWN, DAC_OVERRIDE, FOWNER), drops each snippet
    # to its own uid (SETUID, SETGID), and at WORKER_TIMEOUT kills it: another uid's process, which takes KILL.
    # tests/dify runs the sandbox with these and checks that an endless snippet is ended.
    sandbox = next(o for o in workloads(render_chart(scenario("v1.13.3"))) if o["metadata"]["name"] == "dify-sandbox")
    capabilities = pod_spec(sandbox)["containers"][0]["securityContext"]["capabilities"]
    assert capabilities == {"drop": ["ALL"],
                            "add": ["CHOWN", "DAC_OVERRIDE", "FOWNER", "KILL", "SETGID", "SETUID", "SYS_CHROOT"]}


def test_sandbox_exception_is_documented():
    text = (CHART / "templates" / "sandbox-deployment.yaml").read_text()
    assert "EXCEPTION" in text and "baseline" in text


def test_every_pod_disables_service_links_and_token_mount(scenario_name):
    for o in workloads(render_chart(scenario(scenario_name))):
        spec = pod_spec(o)
        assert spec["enableServiceLinks"] is False, o["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, o["metadata"]["name"]


def test_every_container_has_requests_and_limits(scenario_name):
    for o in workloads(render_chart(scenario(scenario_name))):
        for c in all_containers(pod_spec(o)):
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), f"{o['metadata']['name']}/{c['name']} {kind}"


def test_every_long_running_container_has_probes(scenario_name):
    for o in render_chart(scenario(scenario_name)):
        if o["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in pod_spec(o)["containers"]:
            assert "livenessProbe" in c, f"{o['metadata']['name']}/{c['name']}"
            if o["metadata"]["name"] != "dify-beat":  # beat serves nothing: liveness only
                assert "readinessProbe" in c or "startupProbe" in c, f"{o['metadata']['name']}/{c['name']}"


@pytest.mark.parametrize(
    "name, path",
    [("dify-api", "/health"), ("dify-plugin-daemon", "/health/check"), ("dify-sandbox", "/health"),
     ("dify-weaviate", "/v1/.well-known/ready")],
)
def test_readiness_probes_use_the_component_health_endpoints(name, path):
    o = next(o for o in render_chart(scenario("seed-https")) if o["metadata"]["name"] == name and "spec" in o
             and o["kind"] in ("Deployment", "StatefulSet"))
    assert pod_spec(o)["containers"][0]["readinessProbe"]["httpGet"]["path"] == path
