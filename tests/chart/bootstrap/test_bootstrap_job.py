"""Bootstrap: the post-install/post-upgrade Job that sets up the first admin and, on request, the model provider.

What it does against a real Dify is proven by tests/dify (the 1.14.2 run is set up by this Job, and runs it twice);
here: what renders, from which values, and what is refused."""

import base64
import json

import pytest

from conftest import env_of, find, get, pod_spec, render_chart, render_error, scenario

BASE = scenario("bootstrap")


def without_provider():
    values = json.loads(json.dumps(BASE))
    values["bootstrap"]["modelProvider"] = {"enabled": False}
    return values


def job_container(objects):
    job = get(objects, "Job", "bootstrap")
    return job, pod_spec(job)["containers"][0]


def test_off_by_default_renders_no_job_and_no_script():
    objects = render_chart(scenario("seed-https"))
    assert not find(objects, "Job", "bootstrap")
    assert not find(objects, "ConfigMap", "bootstrap")


def test_runs_after_the_migration_on_install_and_upgrade_and_never_retries(helm):
    objects = render_chart(BASE, helm=helm)
    job, container = job_container(objects)
    migration = get(objects, "Job", "migration")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "post-install,post-upgrade"
    assert int(annotations["helm.sh/hook-weight"]) > int(migration["metadata"]["annotations"]["helm.sh/hook-weight"])
    # A retry is another sign-in, and Dify locks the admin out after five failed ones.
    assert job["spec"]["backoffLimit"] == 0
    assert container["command"] == ["python", "/bootstrap/bootstrap.py"]
    assert container["image"] == "langgenius/dify-api:1.14.2"


def test_the_script_ships_in_a_configmap_mounted_where_the_command_reads_it():
    objects = render_chart(BASE)
    job, container = job_container(objects)
    script = get(objects, "ConfigMap", "bootstrap")["data"]["bootstrap.py"]
    assert script.startswith('"""Declarative first set-up of Dify')
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
    assert mounts["script"] == "/bootstrap"
    assert volumes["script"]["configMap"]["name"] == "dify-bootstrap"
    # A new script is visible on the Job.
    assert len(job["metadata"]["annotations"]["checksum/script"]) == 64


def test_secrets_come_from_the_release_secrets_and_the_rest_from_values():
    _, container = job_container(render_chart(BASE))
    env = env_of(container)
    assert env["DIFY_API_URL"]["value"] == "http://dify-api:5001"
    assert env["ADMIN_EMAIL"]["value"] == "admin@example.com"
    assert env["ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "dify-internal", "key": "admin-password"}
    assert env["INIT_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "dify-internal", "key": "init-password"}
    key = env["MODEL_API_KEY"]["valueFrom"]["secretKeyRef"]
    assert (key["name"], key["key"], key["optional"]) == ("dify", "openai-api-key", True)
    provider = json.loads(env["MODEL_PROVIDER"]["value"])
    assert provider == {
        "provider": "langgenius/openai_api_compatible/openai_api_compatible",
        "endpointUrl": "http://vllm.models.svc:8000/v1",
        "models": BASE["bootstrap"]["modelProvider"]["models"],
    }
    assert env["MODEL_PLUGIN_PACKAGE"]["value"] == "/plugin/plugin.difypkg"


def test_the_package_configmap_is_mounted_and_a_marketplace_plugin_needs_none():
    job, container = job_container(render_chart(BASE))
    assert {"name": "plugin", "mountPath": "/plugin", "readOnly": True} in container["volumeMounts"]
    assert {"name": "plugin", "configMap": {"name": "model-plugin"}} in pod_spec(job)["volumes"]
    values = json.loads(json.dumps(BASE))
    uid = "langgenius/openai_api_compatible:0.0.63@" + "a" * 64
    values["bootstrap"]["modelProvider"].update({"packageConfigMap": {"name": ""}, "marketplaceIdentifier": uid})
    job, container = job_container(render_chart(values))
    assert "plugin" not in {m["name"] for m in container["volumeMounts"]}
    assert json.loads(env_of(container)["MODEL_PROVIDER"]["value"])["marketplaceIdentifier"] == uid
    assert "MODEL_PLUGIN_PACKAGE" not in env_of(container)


def test_a_package_url_is_handed_to_the_job_as_it_is():
    values = json.loads(json.dumps(BASE))
    url = "http://artifacts.corp.svc/plugins/openai_api_compatible-offline.difypkg"
    values["bootstrap"]["modelProvider"].update({"packageConfigMap": {"name": ""}, "packageUrl": url})
    job, container = job_container(render_chart(values))
    env = env_of(container)
    assert env["MODEL_PLUGIN_URL"]["value"] == url
    assert "MODEL_PLUGIN_PACKAGE" not in env and "marketplaceIdentifier" not in env["MODEL_PROVIDER"]["value"]


def test_admin_only_sets_no_provider_and_no_key():
    _, container = job_container(render_chart(without_provider()))
    env = env_of(container)
    assert not {"MODEL_PROVIDER", "MODEL_API_KEY", "MODEL_PLUGIN_PACKAGE", "MODEL_PLUGIN_URL"} & set(env)
    assert [m["name"] for m in container["volumeMounts"]] == ["script"]


def test_the_admin_password_is_generated_like_the_init_password():
    secret = get(render_chart(BASE), "Secret", "internal")
    password = base64.b64decode(secret["data"]["admin-password"]).decode()
    # Dify wants letters and digits in a password.
    assert len(password) == 24 and password[:12].isalpha() and password[12:].isdigit()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"adminEmail": ""}, 'bootstrap.adminEmail "" must be the first admin\'s email address'),
        ({"adminEmail": "admin"}, 'bootstrap.adminEmail "admin" must be'),
        ({"enabled": False}, "bootstrap.modelProvider.enabled=true needs bootstrap.enabled=true"),
        ({"modelProvider": {"endpointUrl": "vllm:8000"}}, 'endpointUrl "vllm:8000" must be the endpoint\'s http(s) base URL'),
        ({"modelProvider": {"models": []}}, "bootstrap.modelProvider.models is empty"),
        ({"modelProvider": {"packageConfigMap": {"name": ""}}}, "needs the model plugin: set marketplaceIdentifier"),
        (
            {"modelProvider": {"marketplaceIdentifier": "langgenius/x:1@" + "0" * 64}},
            "set one of marketplaceIdentifier, packageConfigMap.name and packageUrl",
        ),
        ({"modelProvider": {"packageUrl": "http://a/p.difypkg"}}, "set one of"),
        (
            {"modelProvider": {"packageConfigMap": {"name": ""}, "packageUrl": "ftp://a/p.difypkg"}},
            'packageUrl "ftp://a/p.difypkg" must be an http(s) URL',
        ),
        (
            {"modelProvider": {"packageConfigMap": {"name": ""}, "marketplaceIdentifier": "langgenius/openai"}},
            "must be a plugin's unique identifier",
        ),
    ],
)
def test_refused_values_name_the_key_and_the_fix(change, message):
    values = json.loads(json.dumps(BASE))
    for key, value in change.items():
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(v, dict):
                    values["bootstrap"][key][k].update(v)
                else:
                    values["bootstrap"][key][k] = v
        else:
            values["bootstrap"][key] = value
    assert message in render_error(values)


def test_a_model_outside_the_schema_is_refused():
    values = json.loads(json.dumps(BASE))
    values["bootstrap"]["modelProvider"]["models"] = [{"name": "m", "type": "rerank"}]
    assert "'/bootstrap/modelProvider/models/0/type': value must be one of 'llm', 'text-embedding'" in render_error(values)
