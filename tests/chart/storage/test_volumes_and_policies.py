"""Storage and network > volumes survive uninstall, files volume placement, files on S3 behind a proxy,
NetworkPolicies."""

import pytest

from conftest import env_of, find, get, merge, pod_spec, render_chart, scenario

CORPORATE_PROXY = {"http": "http://proxy.corp:3128", "https": "http://proxy.corp:3128"}


def test_pvcs_are_kept_on_uninstall_and_use_the_class_from_values(scenario_name):
    values = scenario(scenario_name)
    objects = render_chart(values)
    for pvc in find(objects, "PersistentVolumeClaim"):
        assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for sts in find(objects, "StatefulSet"):
        assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
        for claim in sts["spec"]["volumeClaimTemplates"]:
            assert claim["spec"]["storageClassName"] == values["storage"]["storageClassName"]
    if not scenario_name.startswith("v0."):  # the plugin daemon and its volume exist from Dify 1.0
        get(objects, "PersistentVolumeClaim", "plugin-daemon")


def test_should_keep_api_and_worker_on_one_node_if_the_files_volume_is_rwo():
    objects = render_chart(scenario("seed-https"))
    assert get(objects, "PersistentVolumeClaim", "files")["spec"]["accessModes"] == ["ReadWriteOnce"]
    for name in ("api", "worker"):
        spec = pod_spec(get(objects, "Deployment", name))
        term = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["topologyKey"] == "kubernetes.io/hostname"
        labels = get(objects, "Deployment", name)["spec"]["template"]["metadata"]["labels"]
        assert all(labels.get(k) == v for k, v in term["labelSelector"]["matchLabels"].items()), name


def test_should_spread_api_and_worker_if_the_files_volume_is_rwx():
    objects = render_chart(scenario("rwx-files"))
    pvc = get(objects, "PersistentVolumeClaim", "files")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == "nutanix-dynamicfile"
    for name in ("api", "worker"):
        assert "affinity" not in pod_spec(get(objects, "Deployment", name))


def test_should_not_create_a_files_volume_if_storage_is_s3():
    objects = render_chart(scenario("s3-storage"))
    assert not find(objects, "PersistentVolumeClaim", "files")
    api = pod_spec(get(objects, "Deployment", "api"))
    assert "volumes" not in api and "affinity" not in api
    env = {e["name"]: e for e in api["containers"][0]["env"]}
    assert env["STORAGE_TYPE"]["value"] == "s3"
    assert env["S3_SECRET_KEY"]["valueFrom"]["secretKeyRef"] == {"name": "dify-s3", "key": "secret-key"}


def proxied_no_proxy(values):
    """NO_PROXY of api, worker, beat and the plugin daemon, each behind the corporate proxy."""
    objects = render_chart(merge(values, {"api": {"proxy": CORPORATE_PROXY}, "pluginDaemon": {"proxy": CORPORATE_PROXY}}))
    return {name: env_of(pod_spec(get(objects, "Deployment", name))["containers"][0])["NO_PROXY"]["value"].split(",")
            for name in ("api", "worker", "beat", "plugin-daemon")}


@pytest.mark.parametrize("plugins", ["", "s3", "pvc"])
def test_should_reach_the_s3_store_directly_if_a_proxy_is_set(plugins):
    # boto3 (api, worker) and the daemon's Go SDK honour HTTP(S)_PROXY. Before the store's host was in NO_PROXY, the
    # real daemon 0.6.1 sent every plugin package to it through the corporate proxy (tests/dify, 1.13.3 on versitygw).
    values = merge(scenario("s3-storage"), {"storage": {"pluginDaemon": {"type": plugins}}})
    for name, direct in proxied_no_proxy(values).items():
        assert "objects.example.com" in direct, name
        assert len(direct) == len(set(direct)), name


def test_should_reach_the_s3_store_directly_if_only_plugins_live_there():
    values = merge(scenario("seed-https"), {"storage": {"pluginDaemon": {"type": "s3"}, "files": {"s3": {
        "endpoint": "http://10.30.0.5:7070", "bucket": "plugins", "existingSecret": "dify-s3"}}}})
    assert all("10.30.0.5" in direct for direct in proxied_no_proxy(values).values())


def test_should_not_name_an_unused_s3_store_in_no_proxy():
    values = merge(scenario("seed-https"), {"storage": {"files": {"s3": {"endpoint": "https://objects.example.com"}}}})
    assert not any("objects.example.com" in direct for direct in proxied_no_proxy(values).values())


@pytest.mark.parametrize("store, ports", [("postgresql", [5432]), ("redis", [6379]), ("weaviate", [8080, 50051])])
def test_data_stores_accept_only_this_releases_dify_pods(store, ports):
    policy = get(render_chart(scenario("seed-https")), "NetworkPolicy", store)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "dify",
                                                             "app.kubernetes.io/instance": "dify"}}}]
    assert [p["port"] for p in rule["ports"]] == ports


def test_sandbox_egress_goes_only_to_the_ssrf_proxy_and_dns():
    policy = get(render_chart(scenario("seed-https")), "NetworkPolicy", "sandbox")
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    proxy, dns = policy["spec"]["egress"]
    assert proxy["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "ssrf-proxy"
    assert proxy["ports"] == [{"port": 3128, "protocol": "TCP"}]
    assert {p["port"] for p in dns["ports"]} == {53}


def test_should_not_create_network_policies_if_disabled():
    values = merge(scenario("seed-https"), {"networkPolicy": {"enabled": False}})
    assert not find(render_chart(values), "NetworkPolicy")
