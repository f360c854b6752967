"""Chart > quality: every scenario lints strictly and renders objects that pass the strict Kubernetes schemas."""

import subprocess

from conftest import CHART, KUBE_VERSION, helm_binary, render_chart, scenario


def test_helm_lint_strict_is_clean(scenario_name, helm):
    proc = subprocess.run(
        [helm_binary(helm), "lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION,
         "--values", str(CHART / "ci" / f"{scenario_name}-values.yaml")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


def test_every_object_passes_the_strict_schemas(scenario_name, helm):
    # render_chart validates each object; the count guards against a scenario that renders nothing.
    objects = render_chart(scenario(scenario_name), helm=helm)
    assert len(objects) > 20


def test_objects_have_unique_kind_and_name(scenario_name):
    objects = render_chart(scenario(scenario_name))
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys))


def test_should_not_render_a_namespace(scenario_name):
    assert not [o for o in render_chart(scenario(scenario_name)) if o["kind"] == "Namespace"]


def test_names_fit_63_characters_with_a_long_release_name():
    objects = render_chart(scenario("seed-https"), name="a-very-long-release-name-for-testing-limits-ok")
    for o in objects:
        assert len(o["metadata"]["name"]) <= 63, o["metadata"]["name"]


def test_the_install_command_of_the_issue_renders(helm):
    # The documented command, flag for flag (helm template instead of upgrade --install: no cluster here).
    sets = ["expose.ingressClassName=kommander-traefik", "expose.path=/dify", "external.scheme=https",
            "external.host=192.0.2.10", "secrets.difySecretKey=" + "ab" * 32, "secrets.openaiApiKey=sk-xxxxxx",
            "images.dify.repository=langgenius/dify", "images.dify.tag=1.13.3",
            "storage.storageClassName=nutanix-volume"]
    cmd = [helm_binary(helm), "template", "dify", "./dify", "-n", "dify", "--kube-version", KUBE_VERSION]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, cwd=CHART.parent, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "image: langgenius/dify-api:1.13.3" in proc.stdout
