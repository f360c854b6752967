"""Egress > plugins, proxies and the environment: the plugin daemon's marketplace, signature keys and storage, the
corporate proxy of api and worker, and extraEnv overriding the chart's variables. Variable names as read at the
pinned tags: api's MarketplaceConfig (Dify 1.13.3 and 1.14.2, api/configs/feature/__init__.py) and the daemon's
Config (0.5.3 and 0.6.1, internal/types/app/config.go)."""

import re

import pytest

from conftest import env_of, get, merge, pod_spec, render_chart, render_error, scenario, workloads

BASE = scenario("v1.13.3")
S3 = scenario("s3-storage")
PROXY = {"http": "http://proxy.corp:3128", "https": "http://proxy.corp:3128", "noProxy": "10.20.0.0/16, .models.corp"}


def container(objects, name):
    return pod_spec(get(objects, "Deployment", name))["containers"][0]


def host_of(url):
    return re.match(r"[a-z]+://([^:/]+)", url).group(1)


def test_marketplace_is_on_by_default_and_off_on_request():
    assert env_of(container(render_chart(BASE), "api"))["MARKETPLACE_ENABLED"]["value"] == "true"
    objects = render_chart(merge(BASE, {"pluginDaemon": {"marketplace": False}}))
    for name in ("api", "worker"):
        assert env_of(container(objects, name))["MARKETPLACE_ENABLED"]["value"] == "false", name


def test_api_and_worker_go_through_the_proxy_but_reach_every_service_of_the_release_directly():
    objects = render_chart(merge(BASE, {"api": {"proxy": PROXY}}))
    for name in ("api", "worker", "beat"):
        env = env_of(container(objects, name))
        assert env["HTTPS_PROXY"]["value"] == env["HTTP_PROXY"]["value"] == "http://proxy.corp:3128", name
        direct = env["NO_PROXY"]["value"].split(",")
        # Every in-cluster URL api and worker are given must bypass the proxy.
        for var in ("PLUGIN_DAEMON_URL", "CODE_EXECUTION_ENDPOINT", "WEAVIATE_ENDPOINT", "INTERNAL_FILES_URL"):
            assert host_of(env[var]["value"]) in direct, (name, var)
        assert {"localhost", "127.0.0.1", ".svc", ".cluster.local", "10.20.0.0/16", ".models.corp"} <= set(direct)
        assert len(direct) == len(set(direct))
    # The daemon's own proxy is separate, and absent here.
    assert "HTTPS_PROXY" not in env_of(container(objects, "plugin-daemon"))


def test_an_external_weaviate_is_reached_directly():
    values = merge(scenario("external-services"), {"api": {"proxy": {"https": "http://proxy.corp:3128"}}})
    env = env_of(container(render_chart(values), "api"))
    assert host_of(env["WEAVIATE_ENDPOINT"]["value"]) in env["NO_PROXY"]["value"].split(",")


def test_no_proxy_variables_without_a_proxy():
    for obj in workloads(render_chart(BASE)):
        for c in pod_spec(obj)["containers"]:
            if obj["metadata"]["name"].endswith("local-sandbox"):
                continue
            if c["name"] == "sandbox":  # its proxy is the SSRF proxy
                continue
            assert "NO_PROXY" not in env_of(c), obj["metadata"]["name"]


THROUGH_SSRF = {"pluginDaemon": {"egressThroughSsrfProxy": True}}


@pytest.mark.parametrize("name", ["v1.13.3", "s3-storage"])
def test_plugin_daemon_leaves_through_the_ssrf_proxy_and_reaches_only_the_release_directly(name):
    values = merge(merge(scenario(name), THROUGH_SSRF), {"pluginDaemon": {"pipIndexUrl": "https://nexus.corp:8443/pypi/simple"}})
    objects = render_chart(values)
    env = env_of(container(objects, "plugin-daemon"))
    service = get(objects, "Service", "ssrf-proxy")
    port = next(p["port"] for p in service["spec"]["ports"])
    assert env["HTTP_PROXY"]["value"] == env["HTTPS_PROXY"]["value"] == f"http://{service['metadata']['name']}:{port}"
    direct = env["NO_PROXY"]["value"].split(",")
    assert len(direct) == len(set(direct))
    # The api (the daemon's callback URL) by each of its names, the PyPI mirror, and on S3 the plugin store.
    api = host_of(env["DIFY_INNER_API_URL"]["value"])
    assert {api, f"{api}.dify", f"{api}.dify.svc", f"{api}.dify.svc.cluster.local", "nexus.corp", "localhost"} <= set(direct)
    if "S3_ENDPOINT" in env:
        assert host_of(env["S3_ENDPOINT"]["value"]) in direct
    # No cluster domain: another namespace's Service (a model server too) meets the allow-list.
    assert not {".svc", ".cluster.local", "svc", "cluster.local"} & set(direct)
    # The SSRF proxy's NetworkPolicy admits the daemon's pods.
    policy = get(objects, "NetworkPolicy", "ssrf-proxy")
    labels = get(objects, "Deployment", "plugin-daemon")["spec"]["template"]["metadata"]["labels"]
    allowed = [f["podSelector"]["matchLabels"] for rule in policy["spec"]["ingress"] for f in rule["from"]]
    assert any(sel.items() <= labels.items() for sel in allowed), (allowed, labels)
    # api and worker keep their own (no) proxy.
    assert "HTTPS_PROXY" not in env_of(container(objects, "api"))


MIRROR = "https://nexus.corp:8443/repository/pypi/simple/"


@pytest.mark.parametrize("plugin_daemon, ignore_uv_lock", [
    ({"pipIndexUrl": MIRROR}, "true"),
    ({"pipIndexUrl": MIRROR, "ignoreUvLock": False}, None),
    ({"ignoreUvLock": True}, None),
    ({}, None),
], ids=["mirror", "mirror-keeping-the-lock", "no-mirror", "default"])
def test_a_mirror_resolves_locked_plugins_against_itself(plugin_daemon, ignore_uv_lock):
    """Daemon 0.6.1 installs a plugin with a uv.lock by `uv sync --frozen -i <mirror>`, which takes the lock's
    files.pythonhosted.org URLs: with a mirror, PLUGIN_IGNORE_UV_LOCK drops --frozen (tests/dify proves both)."""
    env = env_of(container(render_chart(merge(BASE, {"pluginDaemon": plugin_daemon})), "plugin-daemon"))
    assert env.get("PLUGIN_IGNORE_UV_LOCK", {}).get("value") == ignore_uv_lock
    assert env.get("PIP_MIRROR_URL", {}).get("value") == plugin_daemon.get("pipIndexUrl")


def test_plugin_daemon_goes_direct_by_default():
    assert not {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"} & env_of(container(render_chart(BASE), "plugin-daemon")).keys()


@pytest.mark.parametrize("proxy", [{"https": "http://proxy.corp:3128"}, {"http": "http://proxy.corp:3128"},
                                   {"noProxy": ".models.corp"}], ids=["https", "http", "noproxy"])
def test_refuses_the_daemon_s_own_proxy_with_egress_through_the_ssrf_proxy(proxy):
    message = render_error(merge(merge(BASE, THROUGH_SSRF), {"pluginDaemon": {"proxy": proxy}}))
    assert "pluginDaemon.egressThroughSsrfProxy" in message and "set ssrfProxy.upstream to the corporate proxy" in message


@pytest.mark.parametrize("kind, source", [("configMap", {"configMap": "plugin-keys"}), ("secret", {"secret": "plugin-keys"})])
def test_plugin_daemon_trusts_the_given_public_keys(kind, source):
    values = merge(BASE, {"pluginDaemon": {"trustedKeys": {**source, "keys": ["acme.pem", "team-b.pem"]}}})
    spec = pod_spec(get(render_chart(values), "Deployment", "plugin-daemon"))
    env = env_of(spec["containers"][0])
    assert env["THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED"]["value"] == "true"
    paths = env["THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS"]["value"].split(",")
    mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "trusted-keys")
    assert paths == [f"{mount['mountPath']}/acme.pem", f"{mount['mountPath']}/team-b.pem"]
    volume = next(v for v in spec["volumes"] if v["name"] == "trusted-keys")
    name_key = "name" if kind == "configMap" else "secretName"
    assert volume[kind][name_key] == "plugin-keys"
    assert [i["path"] for i in volume[kind]["items"]] == ["acme.pem", "team-b.pem"]


def test_plugin_daemon_trusts_only_the_marketplace_key_by_default():
    spec = pod_spec(get(render_chart(BASE), "Deployment", "plugin-daemon"))
    assert not {"THIRD_PARTY_SIGNATURE_VERIFICATION_ENABLED", "THIRD_PARTY_SIGNATURE_VERIFICATION_PUBLIC_KEYS"} & env_of(spec["containers"][0]).keys()
    assert "trusted-keys" not in {v["name"] for v in spec["volumes"]}


@pytest.mark.parametrize("values, message", [
    ({"pluginDaemon": {"trustedKeys": {"configMap": "a", "secret": "b", "keys": ["k.pem"]}}}, "configMap or secret, not both"),
    ({"pluginDaemon": {"trustedKeys": {"configMap": "a"}}}, "pluginDaemon.trustedKeys.keys is empty"),
    ({"pluginDaemon": {"trustedKeys": {"keys": ["k.pem"]}}}, "needs pluginDaemon.trustedKeys.configMap or"),
    ({"pluginDaemon": {"trustedKeys": {"secret": "a", "keys": ["../k"]}}}, "is not a ConfigMap or Secret key"),
    ({"pluginDaemon": {"forceVerifyingSignature": False, "trustedKeys": {"secret": "a", "keys": ["k.pem"]}}},
     "set forceVerifyingSignature=true or remove trustedKeys"),
    ({"api": {"proxy": {"noProxy": ".corp"}}}, "api.proxy.noProxy is set without api.proxy.http"),
    ({"storage": {"pluginDaemon": {"type": "s3"}}}, "storage.files.s3.endpoint is required with storage.pluginDaemon.type=s3"),
], ids=["both-sources", "no-keys", "keys-without-source", "bad-key", "keys-without-verification", "noproxy-alone",
        "plugin-s3-without-store"])
def test_refuses_plugin_and_proxy_values_that_cannot_work(values, message):
    assert message in render_error(merge(BASE, values))


def test_plugin_daemon_keeps_plugins_in_the_files_bucket_with_storage_on_s3():
    objects = render_chart(S3)
    spec = pod_spec(get(objects, "Deployment", "plugin-daemon"))
    env = env_of(spec["containers"][0])
    s3 = S3["storage"]["files"]["s3"]
    assert env["PLUGIN_STORAGE_TYPE"]["value"] == "aws_s3"
    assert env["PLUGIN_STORAGE_OSS_BUCKET"]["value"] == s3["bucket"]
    assert env["S3_ENDPOINT"]["value"] == s3["endpoint"]
    assert env["S3_USE_AWS"]["value"] == "false"  # else the daemon ignores S3_ENDPOINT
    assert env["S3_USE_PATH_STYLE"]["value"] == "true"
    assert env["AWS_REGION"]["value"] == s3["region"]
    for var, key in (("AWS_ACCESS_KEY", "access-key"), ("AWS_SECRET_KEY", "secret-key")):
        assert env[var]["valueFrom"]["secretKeyRef"] == {"name": s3["existingSecret"], "key": key}
    assert "PLUGIN_STORAGE_LOCAL_ROOT" not in env
    # Unpacked plugins and their Python environments stay on the volume, so restarts reuse them.
    assert env["PLUGIN_WORKING_PATH"]["value"].startswith("/app/storage/")
    assert {"name": "storage", "mountPath": "/app/storage"} in spec["containers"][0]["volumeMounts"]
    assert get(objects, "PersistentVolumeClaim", "plugin-daemon")


@pytest.mark.parametrize("override, bucket, storage_type", [
    ({"bucket": "dify-plugins"}, "dify-plugins", "aws_s3"),
    ({"type": "pvc"}, None, "local"),
], ids=["own-bucket", "kept-on-the-volume"])
def test_plugin_storage_can_differ_from_the_files_store(override, bucket, storage_type):
    values = merge(S3, {"storage": {"pluginDaemon": override}})
    env = env_of(container(render_chart(values), "plugin-daemon"))
    assert env["PLUGIN_STORAGE_TYPE"]["value"] == storage_type
    assert env.get("PLUGIN_STORAGE_OSS_BUCKET", {}).get("value") == bucket


def test_plugin_daemon_store_without_a_region_signs_for_us_east_1():
    values = merge(S3, {"storage": {"files": {"s3": {"region": "", "addressStyle": "virtual"}}}})
    env = env_of(container(render_chart(values), "plugin-daemon"))
    assert env["AWS_REGION"]["value"] == "us-east-1"
    assert env["S3_USE_PATH_STYLE"]["value"] == "false"


def test_extra_env_replaces_a_chart_variable_in_place_and_appends_the_rest():
    values = merge(BASE, {
        "api": {"extraEnv": [{"name": "LOG_LEVEL", "value": "DEBUG"}, {"name": "EXTRA_ONE", "value": "1"},
                             {"name": "REDIS_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "mine", "key": "pw"}}}]},
        "pluginDaemon": {"extraEnv": [{"name": "PYTHON_ENV_INIT_TIMEOUT", "value": "900"}]},
        "web": {"extraEnv": [{"name": "HOSTNAME", "value": "::"}]},
    })
    objects = render_chart(values)
    names = [e["name"] for e in container(objects, "api")["env"]]
    env = env_of(container(objects, "api"))
    assert env["LOG_LEVEL"]["value"] == "DEBUG"
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "mine"
    # $(REDIS_PASSWORD) in the broker URL still refers to a variable defined before it.
    assert names.index("REDIS_PASSWORD") < names.index("CELERY_BROKER_URL")
    assert names[-1] == "EXTRA_ONE"
    assert env_of(container(objects, "plugin-daemon"))["PYTHON_ENV_INIT_TIMEOUT"]["value"] == "900"
    assert env_of(container(objects, "web"))["HOSTNAME"]["value"] == "::"


@pytest.mark.parametrize("name", ["v1.13.3", "v1.17.1-agent", "s3-storage", "external-services"])
def test_every_container_sets_each_variable_once(name):
    extra = [{"name": "LOG_LEVEL", "value": "DEBUG"}]
    keys = ["api", "worker", "beat", "web", "sandbox", "ssrfProxy", "pluginDaemon", "collaboration", "migration"]
    values = merge(scenario(name), {k: {"extraEnv": extra} for k in keys})
    for obj in workloads(render_chart(values)):
        spec = pod_spec(obj)
        for c in spec.get("initContainers", []) + spec["containers"]:
            names = [e["name"] for e in c.get("env", [])]
            assert len(names) == len(set(names)), (obj["metadata"]["name"], c["name"], names)


def test_refuses_a_variable_given_twice_in_extra_env():
    message = render_error(merge(BASE, {"worker": {"extraEnv": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]}}))
    assert "worker.extraEnv sets A twice" in message
