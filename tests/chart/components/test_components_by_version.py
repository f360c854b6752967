"""Components > versions: what renders for Dify 0.14.x, 1.13.x and 1.17.x, and how each is wired."""

import pytest

from conftest import env_of, find, get, merge, pod_spec, render_chart, scenario

API_IMAGE_WORKLOADS = ["api", "worker", "beat", "migration"]


def main_env(objects, kind, name):
    return env_of(pod_spec(get(objects, kind, name))["containers"][0])


def image(objects, kind, name):
    return pod_spec(get(objects, kind, name))["containers"][0]["image"]


@pytest.mark.parametrize("name", ["v0.14.3"])
def test_should_not_create_plugin_daemon_and_beat_if_dify_is_older_than_1_0(name, helm):
    objects = render_chart(scenario(name), helm=helm)
    for kind in ("Deployment", "Service", "PersistentVolumeClaim", "Ingress", "PodDisruptionBudget"):
        assert not find(objects, kind, "plugin-daemon"), kind
    assert not find(objects, "Deployment", "beat")
    assert "PLUGIN_DAEMON_URL" not in main_env(objects, "Deployment", "api")
    assert main_env(objects, "Deployment", "api")["STORAGE_TYPE"]["value"] == "local"


@pytest.mark.parametrize("name", ["v1.13.3", "v1.17.1"])
def test_should_create_exactly_one_beat_if_dify_is_1_x(name):
    beat = get(render_chart(scenario(name)), "Deployment", "beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


@pytest.mark.parametrize(
    "name, sandbox, plugin_daemon, weaviate",
    [("v0.14.3", "0.2.10", None, "1.19.0"),
     ("v1.13.3", "0.2.14", "0.6.1-local", "1.27.0"),
     ("v1.17.1", "0.2.15", "0.6.10-local", "1.39.2")],
)
def test_companion_images_are_pinned_per_dify_version(name, sandbox, plugin_daemon, weaviate):
    objects = render_chart(scenario(name))
    assert image(objects, "Deployment", "sandbox") == f"langgenius/dify-sandbox:{sandbox}"
    if plugin_daemon:
        assert image(objects, "Deployment", "plugin-daemon") == f"langgenius/dify-plugin-daemon:{plugin_daemon}"
    assert image(objects, "StatefulSet", "weaviate") == f"semitechnologies/weaviate:{weaviate}"


def test_should_use_the_override_if_a_component_image_is_set():
    values = merge(scenario("v1.13.3"), {"images": {"sandbox": {"tag": "9.9.9"}, "api": {"repository": "r/api"}},
                                         "weaviate": {"image": {"tag": "1.28.0"}}})
    objects = render_chart(values)
    assert image(objects, "Deployment", "sandbox") == "langgenius/dify-sandbox:9.9.9"
    assert image(objects, "Deployment", "worker") == "r/api:1.13.3"
    assert image(objects, "StatefulSet", "weaviate") == "semitechnologies/weaviate:1.28.0"


def test_dify_images_come_from_the_repository_prefix():
    # At the root path; under /dify the web image is the project's build (components/test_web_image.py).
    objects = render_chart(scenario("root-path"))
    assert image(objects, "Deployment", "api") == "langgenius/dify-api:1.13.3"
    assert image(objects, "Deployment", "web") == "langgenius/dify-web:1.13.3"


def test_should_read_the_version_from_images_dify_version_if_the_tag_is_no_version():
    values = merge(scenario("v1.13.3"), {"images": {"dify": {"tag": "sha256:" + "a" * 64, "version": "1.17.1"}}})
    objects = render_chart(values)
    assert image(objects, "Deployment", "api") == "langgenius/dify-api@sha256:" + "a" * 64
    assert "DEPLOYMENT_EDITION" in main_env(objects, "Deployment", "api")


@pytest.mark.parametrize("name, present, absent", [("v1.13.3", "EDITION", "DEPLOYMENT_EDITION"),
                                                   ("v0.14.3", "EDITION", "DEPLOYMENT_EDITION"),
                                                   ("v1.17.1", "DEPLOYMENT_EDITION", "EDITION")])
def test_edition_variable_follows_the_dify_version(name, present, absent):
    env = main_env(render_chart(scenario(name)), "Deployment", "api")
    assert present in env and absent not in env


@pytest.mark.parametrize("name, private_blocked", [("v1.13.3", False), ("v1.17.1", True)])
def test_ssrf_proxy_blocks_private_networks_from_dify_1_15(name, private_blocked):
    conf = get(render_chart(scenario(name)), "ConfigMap", "ssrf-proxy")["data"]["squid.conf"]
    assert ("http_access deny private_dst" in conf) == private_blocked


@pytest.mark.parametrize("name", ["seed-https", "root-path", "v0.14.3"])
def test_public_url_variables_use_scheme_host_and_path(name):
    values = scenario(name)
    path = "" if values["expose"]["path"] == "/" else values["expose"]["path"]
    url = f"{values['external']['scheme']}://{values['external']['host']}{path}"
    env = main_env(render_chart(values), "Deployment", "api")
    for var in ("CONSOLE_API_URL", "CONSOLE_WEB_URL", "SERVICE_API_URL", "APP_API_URL", "APP_WEB_URL", "FILES_URL",
                "TRIGGER_URL"):
        assert env[var]["value"] == url, var
    assert env["ENDPOINT_URL_TEMPLATE"]["value"] == url + "/e/{hook_id}"
    assert env["INTERNAL_FILES_URL"]["value"] == "http://dify-api:5001"
    web = main_env(render_chart(values), "Deployment", "web")
    assert web["CONSOLE_API_URL"]["value"] == url and web["APP_API_URL"]["value"] == url


def test_internal_urls_use_service_dns():
    objects = render_chart(scenario("seed-https"))
    services = {s["metadata"]["name"] for s in find(objects, "Service")}
    env = main_env(objects, "Deployment", "api")
    for var in ("PLUGIN_DAEMON_URL", "CODE_EXECUTION_ENDPOINT", "SSRF_PROXY_HTTP_URL", "WEAVIATE_ENDPOINT"):
        host = env[var]["value"].split("://")[1].split(":")[0]
        assert host in services, var
    daemon = main_env(objects, "Deployment", "plugin-daemon")
    assert daemon["DIFY_INNER_API_URL"]["value"] == "http://dify-api:5001"
    assert daemon["DB_DATABASE"]["value"] == "dify_plugin"


def test_no_long_running_pod_migrates(scenario_name):
    objects = render_chart(scenario(scenario_name))
    for name in API_IMAGE_WORKLOADS:
        for o in find(objects, "Deployment", name) + find(objects, "Job", name):
            assert env_of(pod_spec(o)["containers"][0])["MIGRATION_ENABLED"]["value"] == "false", name


def test_one_migration_job_runs_after_install_and_upgrade(scenario_name):
    # Other Jobs (bootstrap) may follow it; only one migrates.
    jobs = find(render_chart(scenario(scenario_name)), "Job")
    migrating = [j for j in jobs if "upgrade" in pod_spec(j)["containers"][0].get("command", [])]
    assert [j["metadata"]["name"] for j in migrating] == ["dify-migration"]
    job = migrating[0]
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    assert job["spec"]["parallelism"] == 1
    assert pod_spec(job)["containers"][0]["command"] == ["flask", "db", "upgrade"]


@pytest.mark.parametrize("component", ["api", "worker", "beat", "web", "sandbox", "ssrf-proxy", "plugin-daemon"])
def test_every_component_has_a_deployment_and_a_pdb(component):
    objects = render_chart(scenario("v1.13.3"))
    get(objects, "Deployment", component)
    if component != "beat":
        assert get(objects, "PodDisruptionBudget", component)["spec"]["maxUnavailable"] == 1


def test_should_not_create_pdbs_if_pod_disruption_budget_is_disabled():
    values = merge(scenario("v1.13.3"), {"podDisruptionBudget": {"enabled": False}})
    assert not find(render_chart(values), "PodDisruptionBudget")


def test_should_not_create_bundled_stores_if_external_services_are_used():
    objects = render_chart(scenario("external-services"))
    assert not find(objects, "StatefulSet")
    env = main_env(objects, "Deployment", "api")
    assert env["DB_HOST"]["value"] == "192.0.2.30"
    assert env["REDIS_USE_SSL"]["value"] == "true"
    assert env["CELERY_BROKER_URL"]["value"] == "rediss://default:$(REDIS_PASSWORD)@192.0.2.31:6380/1"
    assert main_env(objects, "Deployment", "plugin-daemon")["DB_SSL_MODE"]["value"] == "require"


def test_helm_test_pod_checks_every_service():
    pod = get(render_chart(scenario("v1.13.3")), "Pod", "test")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    script = pod["spec"]["containers"][0]["command"][-1]
    for url in ("http://dify-api:5001/health", "http://dify-web:3000/", "http://dify-sandbox:8194/health",
                "http://dify-plugin-daemon:5002/health/check", "http://dify-ssrf-proxy:3128"):
        assert url in script


def test_should_run_api_websocket_for_collaboration_if_dify_is_1_14_or_later(helm):
    objects = render_chart(scenario("v1.17.1"), helm=helm)
    ws = get(objects, "Deployment", "api-websocket")
    assert ws["spec"]["replicas"] == 1
    env = env_of(pod_spec(ws)["containers"][0])
    assert env["SERVER_WORKER_CLASS"]["value"] == "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
    assert env["MIGRATION_ENABLED"]["value"] == "false"
    assert env["SECRET_KEY"] == main_env(objects, "Deployment", "api")["SECRET_KEY"]
    for name in ("api", "worker", "api-websocket"):
        assert main_env(objects, "Deployment", name)["ENABLE_COLLABORATION_MODE"]["value"] == "true"
    assert main_env(objects, "Deployment", "web")["NEXT_PUBLIC_SOCKET_URL"]["value"] == "wss://192.0.2.10/dify"
    get(objects, "Service", "api-websocket")


@pytest.mark.parametrize("name, values", [("v1.13.3", {}), ("v1.17.1", {"collaboration": {"enabled": False}})])
def test_should_not_run_api_websocket_if_collaboration_is_off(name, values):
    objects = render_chart(merge(scenario(name), values))
    assert not find(objects, "Deployment", "api-websocket")
    # 1.13 has no such variable; from 1.14 Dify defaults it on, so off is said explicitly.
    assert main_env(objects, "Deployment", "api").get("ENABLE_COLLABORATION_MODE", {}).get("value") == (
        None if name == "v1.13.3" else "false")
    assert "NEXT_PUBLIC_SOCKET_URL" not in main_env(objects, "Deployment", "web")


def test_should_refuse_collaboration_if_dify_is_older_than_1_14(helm):
    from conftest import render_error
    message = render_error(merge(scenario("v1.13.3"), {"collaboration": {"enabled": True}}), helm=helm)
    assert "collaboration.enabled=true needs Dify 1.14" in message


def test_should_run_the_agent_runtime_if_agent_is_enabled(helm):
    objects = render_chart(scenario("v1.17.1-agent"), helm=helm)
    for name in ("agent-backend", "agent-local-sandbox", "agent-ssrf-proxy"):
        get(objects, "Deployment", name)
        get(objects, "Service", name)
    get(objects, "PersistentVolumeClaim", "agent-local-sandbox")
    api, worker = main_env(objects, "Deployment", "api"), main_env(objects, "Deployment", "worker")
    agent = main_env(objects, "Deployment", "agent-backend")
    sandbox = main_env(objects, "Deployment", "agent-local-sandbox")
    assert api["AGENT_BACKEND_BASE_URL"]["value"] == "http://dify-agent-backend:5050"
    assert api["AGENT_BACKEND_API_TOKEN"] == worker["AGENT_BACKEND_API_TOKEN"]
    assert api["AGENT_BACKEND_API_TOKEN"]["valueFrom"] == agent["DIFY_AGENT_API_TOKEN"]["valueFrom"]
    assert agent["DIFY_AGENT_LOCAL_SANDBOX_AUTH_TOKEN"]["valueFrom"] == sandbox["SHELLCTL_AUTH_TOKEN"]["valueFrom"]
    assert agent["DIFY_AGENT_INNER_API_KEY"]["valueFrom"] == api["INNER_API_KEY_FOR_PLUGIN"]["valueFrom"]
    assert agent["DIFY_AGENT_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@dify-redis:6379/2"
    assert agent["DIFY_AGENT_LOCAL_SANDBOX_ENDPOINT"]["value"] == "http://dify-agent-local-sandbox:5004"
    assert sandbox["HTTPS_PROXY"]["value"] == "http://dify-agent-ssrf-proxy:3128"


def test_agent_local_sandbox_reaches_only_its_proxy_agent_backend_api_and_dns():
    policy = get(render_chart(scenario("v1.17.1-agent")), "NetworkPolicy", "agent-local-sandbox")
    targets = [(r["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/component"),
                [p["port"] for p in r["ports"]]) for r in policy["spec"]["egress"]]
    assert targets == [("agent-ssrf-proxy", [3128]), ("agent-backend", [5050]), ("api", [5001]), (None, [53, 53])]
    [rule] = policy["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "agent-backend"


@pytest.mark.parametrize("name", ["v1.17.1", "v1.13.3"])
def test_should_not_run_the_agent_runtime_by_default(name):
    objects = render_chart(scenario(name))
    assert not [o for o in objects if o["metadata"]["name"].startswith("dify-agent")]
    assert "AGENT_BACKEND_BASE_URL" not in main_env(objects, "Deployment", "api")


def test_should_refuse_the_agent_runtime_if_dify_is_older_than_1_16(helm):
    from conftest import render_error
    message = render_error(merge(scenario("v1.13.3"), {"agent": {"enabled": True}}), helm=helm)
    assert "agent.enabled=true needs Dify 1.16" in message


def test_only_api_and_worker_follow_the_files_volume():
    objects = render_chart(scenario("v1.17.1-agent"))
    for o in objects:
        if o["kind"] in ("Deployment", "StatefulSet"):
            spec = pod_spec(o)
            labels = o["spec"]["template"]["metadata"]["labels"]
            follows = "affinity" in spec or "dify.gitops/files-volume" in labels
            assert follows == (o["metadata"]["name"] in ("dify-api", "dify-worker")), o["metadata"]["name"]
