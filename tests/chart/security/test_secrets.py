"""Security > Secrets: every secret reaches pods through secretKeyRef, never as a literal or in a ConfigMap."""

import base64
import re

import pytest
import yaml

from conftest import find, get, pod_spec, render_chart, scenario, workloads

SENSITIVE = re.compile(r"(PASSWORD|SECRET|_KEY|KEYS|TOKEN|INNER_API_KEY_FOR_PLUGIN)$")
INTERNAL_KEYS = {"postgres-password", "redis-password", "weaviate-api-key", "plugin-daemon-key", "inner-api-key",
                 "sandbox-api-key", "init-password", "admin-password", "agent-api-token", "agent-local-sandbox-token", "agent-server-secret-key"}


def containers(objects):
    for o in workloads(objects):
        spec = pod_spec(o)
        for c in spec.get("initContainers", []) + spec["containers"]:
            yield o, c


def test_every_sensitive_env_var_uses_a_secret_key_ref(scenario_name):
    for o, c in containers(render_chart(scenario(scenario_name))):
        for e in c.get("env", []):
            if SENSITIVE.search(e["name"]):
                assert "secretKeyRef" in e.get("valueFrom", {}), f"{o['metadata']['name']}/{c['name']}: {e['name']}"


def test_credentials_in_urls_come_from_env_expansion(scenario_name):
    for o, c in containers(render_chart(scenario(scenario_name))):
        for e in c.get("env", []):
            value = e.get("value", "")
            if re.search(r"://[^/@]*@", value):
                assert "$(REDIS_PASSWORD)" in value, f"{c['name']}: {e['name']}={value}"


def test_given_secrets_appear_only_in_the_release_secret():
    values = scenario("seed-https")
    objects = render_chart(values)
    for o in objects:
        if o["kind"] == "Secret":
            continue
        text = yaml.safe_dump(o)
        assert values["secrets"]["difySecretKey"] not in text, o["metadata"]["name"]
        assert values["secrets"]["openaiApiKey"] not in text, o["metadata"]["name"]


def test_should_keep_the_openai_key_in_the_release_secret():
    secret = get(render_chart(scenario("seed-https")), "Secret", "dify")
    assert set(secret["data"]) == {"secret-key", "openai-api-key"}


def test_should_not_store_an_openai_key_if_none_is_given():
    assert set(get(render_chart(scenario("v1.13.3")), "Secret", "dify")["data"]) == {"secret-key"}


def test_internal_secret_is_generated_and_kept_on_uninstall():
    secret = get(render_chart(scenario("seed-https")), "Secret", "internal")
    assert set(secret["data"]) == INTERNAL_KEYS
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


def test_should_not_generate_internal_secrets_if_secrets_existing_secret_is_set():
    objects = render_chart(scenario("external-services"))
    assert not find(objects, "Secret", "internal")
    api = pod_spec(get(objects, "Deployment", "api"))["containers"][0]
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in api["env"] if "valueFrom" in e}
    assert refs == {"dify", "dify-internal-keys", "dify-ndb", "dify-redis", "dify-weaviate"}


@pytest.mark.parametrize(
    "api_var, daemon_var",
    [("PLUGIN_DAEMON_KEY", "SERVER_KEY"), ("INNER_API_KEY_FOR_PLUGIN", "DIFY_INNER_API_KEY"),
     ("DB_PASSWORD", "DB_PASSWORD"), ("REDIS_PASSWORD", "REDIS_PASSWORD")],
)
def test_api_and_plugin_daemon_share_their_keys(api_var, daemon_var):
    objects = render_chart(scenario("seed-https"))
    api = {e["name"]: e for e in pod_spec(get(objects, "Deployment", "api"))["containers"][0]["env"]}
    daemon = {e["name"]: e for e in pod_spec(get(objects, "Deployment", "plugin-daemon"))["containers"][0]["env"]}
    assert api[api_var]["valueFrom"] == daemon[daemon_var]["valueFrom"]


def test_api_and_sandbox_share_the_sandbox_key():
    objects = render_chart(scenario("seed-https"))
    api = {e["name"]: e for e in pod_spec(get(objects, "Deployment", "api"))["containers"][0]["env"]}
    sandbox = {e["name"]: e for e in pod_spec(get(objects, "Deployment", "sandbox"))["containers"][0]["env"]}
    assert api["CODE_EXECUTION_API_KEY"]["valueFrom"] == sandbox["API_KEY"]["valueFrom"]


def test_every_dify_process_reads_the_same_secret_key(scenario_name):
    refs = set()
    for o, c in containers(render_chart(scenario(scenario_name))):
        for e in c.get("env", []):
            if e["name"] == "SECRET_KEY":
                refs.add(yaml.safe_dump(e["valueFrom"]))
    assert len(refs) == 1


def test_api_gets_the_init_password_from_the_internal_secret_and_nothing_else_does():
    """Dify's setup page lets the first visitor become admin unless INIT_PASSWORD is set."""
    objects = render_chart(scenario("seed-https"))
    holders = []
    for o, c in containers(objects):
        for e in c.get("env", []):
            if e["name"] == "INIT_PASSWORD":
                holders.append(f"{o['metadata']['name']}/{c['name']}")
                assert "value" not in e, "INIT_PASSWORD must never be a literal"
                assert e["valueFrom"]["secretKeyRef"] == {"name": "dify-internal", "key": "init-password"}
    assert holders == ["dify-api/api"], holders


def test_generated_init_password_has_letters_and_digits():
    secret = get(render_chart(scenario("seed-https")), "Secret", "dify-internal")
    password = base64.b64decode(secret["data"]["init-password"]).decode()
    assert len(password) == 24 and re.search(r"[A-Za-z]", password) and re.search(r"\d", password)
