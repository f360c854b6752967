"""Install > real API server: `helm install` then `helm upgrade` into the local kube-apiserver (NKP fixture).

No pod ever runs here (no kubelet, no images), so nothing waits: hooks are skipped at install (the migration Job
would wait forever) and every pod template, the Job's and the test Pod's included, is instead created with
`kubectl create --dry-run=server` as a Pod in a namespace enforcing Pod Security "restricted".
"""

import base64
import json

import pytest
import yaml

from cluster import as_pod, dry_run_pod, helm_run, kubectl, namespace
from conftest import helm_binary, merge, render_chart, run, scenario

pytestmark = pytest.mark.install

# The sandbox's documented exception (templates/sandbox-deployment.yaml): it needs "baseline".
BASELINE_ONLY = {"dify-sandbox"}


def secret_data(kube, ns, name):
    out = kubectl(kube, "get", "secret", name, "-n", ns, "-o", "json").stdout
    return json.loads(out)["data"]


def manifest(kube, helm, ns):
    out = run(kube, helm_binary(helm), "get", "manifest", "dify", "--namespace", ns).stdout
    return [o for o in yaml.safe_load_all(out) if o]


@pytest.mark.parametrize("name", ["seed-https", "v0.14.3", "v1.17.1", "v1.17.1-agent", "external-services",
                                  "autoscaling"])
def test_install_then_upgrade_is_accepted_and_keeps_generated_secrets(kube, helm, name):
    ns = namespace(kube, "restricted")
    values = scenario(name)
    notes = helm_run(kube, helm, "install", ns, values).stdout
    path = "" if values["expose"]["path"] == "/" else values["expose"]["path"]
    assert f"Open: {values['external']['scheme']}://{values['external']['host']}{path}/install" in notes
    assert "jsonpath='{.data.init-password}' | base64 -d" in notes, "NOTES tell how to read INIT_PASSWORD"
    objects = manifest(kube, helm, ns)
    # Every object of the release exists on the server (kubectl get -f fetches each by kind and name).
    listed = kubectl(kube, "get", "-n", ns, "-o", "name", "-f", "-",
                     stdin=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects})).stdout.split()
    assert len(listed) == len(objects) > 20
    internal = values.get("secrets", {}).get("existingSecret") or "dify-internal"
    before = secret_data(kube, ns, internal) if internal == "dify-internal" else None
    release_secret = secret_data(kube, ns, "dify")

    helm_run(kube, helm, "upgrade", ns, values)
    if before is not None:
        after = secret_data(kube, ns, internal)
        assert after == before, "helm upgrade changed generated secrets"
        decoded = {k: base64.b64decode(v).decode() for k, v in after.items()}
        passwords = ("init-password", "admin-password")
        assert all(len(v) == 48 for k, v in decoded.items() if k not in ("agent-server-secret-key", *passwords))
        for password in passwords:
            assert len(decoded[password]) == 24, f"{password}: 12 letters then 12 digits"
        # Unpadded base64url of exactly 32 bytes, as the agent backend requires.
        assert len(base64.urlsafe_b64decode(decoded["agent-server-secret-key"] + "=")) == 32
    assert secret_data(kube, ns, "dify") == release_secret


@pytest.mark.parametrize("old, new", [("v0.14.3", "v1.13.3")])
def test_upgrade_across_dify_versions_keeps_generated_secrets(kube, helm, old, new):
    ns = namespace(kube, "restricted")
    helm_run(kube, helm, "install", ns, scenario(old))
    before = secret_data(kube, ns, "dify-internal")
    # Across Dify 1.0 the upgrade needs the plugin migration acknowledged (tests/chart/upgrade).
    helm_run(kube, helm, "upgrade", ns, merge(scenario(new), {"upgrade": {"acknowledgePluginMigration": True}}))
    assert secret_data(kube, ns, "dify-internal") == before
    kubectl(kube, "get", "deployment/dify-plugin-daemon", "deployment/dify-beat", "pvc/dify-plugin-daemon", "-n", ns)


def test_uninstall_keeps_data_and_keys_and_a_reinstall_reuses_them(kube, helm):
    ns = namespace(kube, "restricted")
    values = scenario("seed-https")
    helm_run(kube, helm, "install", ns, values)
    before = secret_data(kube, ns, "dify-internal")
    run(kube, helm_binary(helm), "uninstall", "dify", "--namespace", ns)
    kubectl(kube, "get", "pvc/dify-files", "pvc/dify-plugin-daemon", "secret/dify-internal", "-n", ns)
    assert kubectl(kube, "get", "deployment/dify-api", "-n", ns, check=False).returncode != 0
    # The kept objects still carry the release's ownership metadata: Helm adopts them, lookup reads the keys.
    helm_run(kube, helm, "install", ns, values)
    assert secret_data(kube, ns, "dify-internal") == before


def test_upgrade_to_a_newer_dify_keeps_generated_secrets(kube, helm):
    ns = namespace(kube, "restricted")
    notes = helm_run(kube, helm, "install", ns, scenario("v1.13.3")).stdout
    assert "Web: ghcr.io/dify-gitops/dify-web:1.13.3 serves https://192.0.2.10/dify/" in notes
    before = secret_data(kube, ns, "dify-internal")
    proc = helm_run(kube, helm, "upgrade", ns, scenario("v1.17.1"))
    assert secret_data(kube, ns, "dify-internal") == before
    # Dify 1.17.1 ships Weaviate 1.39: the running 1.27 stays until weaviate.image.tag steps it up.
    image = json.loads(kubectl(kube, "get", "statefulset", "dify-weaviate", "-n", ns, "-o", "json").stdout)
    assert image["spec"]["template"]["spec"]["containers"][0]["image"] == "semitechnologies/weaviate:1.27.0"
    assert "Weaviate stays at 1.27.0" in proc.stdout


def test_hpas_and_spread_constraints_are_admitted_as_rendered(kube, helm):
    ns = namespace(kube, "restricted")
    helm_run(kube, helm, "install", ns, scenario("autoscaling"))
    hpas = json.loads(kubectl(kube, "get", "hpa", "-n", ns, "-o", "json").stdout)["items"]
    assert sorted(h["metadata"]["name"] for h in hpas) == ["dify-api", "dify-web", "dify-worker"]
    for hpa in hpas:
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
        assert hpa["spec"]["scaleTargetRef"]["name"] == hpa["metadata"]["name"]
        deployment = json.loads(kubectl(kube, "get", "deployment", hpa["metadata"]["name"], "-n", ns, "-o",
                                        "json").stdout)
        # The server keeps every field of the constraint (a disabled feature gate would drop matchLabelKeys).
        [spread] = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["matchLabelKeys"] == ["pod-template-hash"]
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"
        assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]


def test_every_pod_template_passes_pod_security_server_side(kube, helm):
    restricted, baseline = namespace(kube, "restricted"), namespace(kube, "baseline")
    values = scenario("v1.17.1-agent")  # the scenario with the most pods
    for ns in (restricted, baseline):  # installs the ServiceAccount the pods name
        helm_run(kube, helm, "install", ns, values)
    # Rendered (not installed) objects: this includes the hooks skipped at install (migration Job, test Pod).
    pods = [o for o in render_chart(values, helm=helm) if o["kind"] in ("Deployment", "StatefulSet", "Job", "Pod")]
    assert {"dify-migration", "dify-test", "dify-api", "dify-postgresql"} <= {o["metadata"]["name"] for o in pods}
    for o in pods:
        name = o["metadata"]["name"]
        proc = dry_run_pod(kube, as_pod(o, restricted))
        if name in BASELINE_ONLY:
            assert proc.returncode != 0 and "restricted" in proc.stderr, f"{name} unexpectedly meets restricted"
            proc = dry_run_pod(kube, as_pod(o, baseline))
        assert proc.returncode == 0, f"{name}: {proc.stderr.strip()}"


@pytest.mark.parametrize("tag, accepted", [("1.28.0", True), ("1.30.0", False), ("1.26.0", False)])
def test_weaviate_upgrade_moves_one_minor_at_a_time(kube, helm, tag, accepted):
    ns = namespace(kube, "restricted")
    helm_run(kube, helm, "install", ns, scenario("v1.13.3"))
    proc = helm_run(kube, helm, "upgrade", ns, merge(scenario("v1.13.3"), {"weaviate": {"image": {"tag": tag}}}),
                    check=False)
    assert (proc.returncode == 0) == accepted, proc.stderr
    if not accepted:
        assert "one minor at a time" in proc.stderr and "weaviate.image.tag=1.27.0" in proc.stderr


def web_notes(kube, helm, values):
    """NOTES.txt of a client-side dry-run install (nothing is created)."""
    out = helm_run(kube, helm, "install", "dify", values, "--dry-run=client").stdout
    assert "NOTES:" in out, out[-2000:]
    return out.split("NOTES:", 1)[1]


def at_path(path, **images):
    return merge(scenario("v1.13.3"), {"expose": {"path": path}, "images": images})


OWN_WEB = {"repository": "registry.example.com/team/dify-web", "tag": "1.13.3"}


def test_notes_name_the_web_image_serving_each_path(kube, helm):
    text = web_notes(kube, helm, at_path("/dify"))
    assert "Web: ghcr.io/dify-gitops/dify-web:1.13.3 serves https://192.0.2.10/dify/" in text
    assert "built for /dify by the dify-gitops project" in text
    assert "WARNING" not in text
    text = web_notes(kube, helm, at_path("/"))
    assert "Web: langgenius/dify-web:1.13.3 serves https://192.0.2.10/" in text
    assert "Dify's stock web image" in text


@pytest.mark.parametrize("path", ["/dify", "/ai"])
def test_notes_warn_that_an_own_web_image_must_be_built_for_the_path(kube, helm, path):
    text = web_notes(kube, helm, at_path(path, web=OWN_WEB))
    assert f"Web: registry.example.com/team/dify-web:1.13.3 serves https://192.0.2.10{path}/" in text
    assert "WARNING" in text and f"NEXT_PUBLIC_BASE_PATH={path}" in text


def test_notes_do_not_warn_about_an_own_web_image_at_the_root_path(kube, helm):
    text = web_notes(kube, helm, at_path("/", web=OWN_WEB))
    assert "Web: registry.example.com/team/dify-web:1.13.3 serves https://192.0.2.10/" in text
    assert "NEXT_PUBLIC_BASE_PATH" not in text
