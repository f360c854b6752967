"""Components > startup contract: what Dify's own processes check or need when they start, read in their sources at
the pinned tags (Dify 1.13.3 and 1.14.2, plugin daemon 0.5.3 and 0.6.1), asserted against the rendered chart."""

import re

import pytest

from conftest import HelmError, env_of, get, merge, pod_spec, render_chart, scenario


def container(objects, kind, name):
    return pod_spec(get(objects, kind, name))["containers"][0]


def at_version(version):
    """The 1.13.3 scenario (served under /dify with the chart's default images) at another Dify version."""
    return merge(scenario("v1.13.3"), {"images": {"dify": {"tag": version}}})


def go_bool(value):
    """strconv.ParseBool, which envconfig uses for bool fields."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(f"not a Go bool: {value!r}")


def plugin_daemon_config_error(env):
    """The remote-installing part of the daemon's Config.Validate (internal/types/app/config.go, 0.5.3 and 0.6.1):
    PLUGIN_REMOTE_INSTALLING_ENABLED defaults to true, and then host and port must be set (max connections and event
    loops have defaults). Returns the daemon's panic message, or None when it starts."""
    def value(name):
        return env[name].get("value", "") if name in env else ""
    if not go_bool(value("PLUGIN_REMOTE_INSTALLING_ENABLED") or "true"):
        return None
    if not value("PLUGIN_REMOTE_INSTALLING_HOST"):
        return "plugin remote installing host is empty"
    if int(value("PLUGIN_REMOTE_INSTALLING_PORT") or 0) == 0:
        return "plugin remote installing port is empty"
    return None


@pytest.mark.parametrize("values", [scenario("v1.13.3"), at_version("1.14.2"), scenario("v1.17.1"),
                                    scenario("external-services")],
                         ids=["1.13.3", "1.14.2", "1.17.1", "external-services"])
def test_plugin_daemon_passes_its_own_configuration_check(values):
    env = env_of(container(render_chart(values), "Deployment", "plugin-daemon"))
    assert plugin_daemon_config_error(env) is None


def test_plugin_daemon_remote_debugging_listens_on_the_pods_loopback_only():
    # With debugging off the daemon has no /debugging/key route, and the Plugins page asks for the key on every
    # visit: an "Internal Server Error" each time. On, its raw TCP listener binds PLUGIN_REMOTE_INSTALLING_HOST
    # (debugging_runtime/server.go, 0.5.3 and 0.6.1): the pod's loopback, which only `kubectl port-forward` reaches.
    # The Service exposes only the HTTP port, and no Ingress routes the TCP one.
    objects = render_chart(scenario("v1.13.3"))
    env = env_of(container(objects, "Deployment", "plugin-daemon"))
    assert go_bool(env["PLUGIN_REMOTE_INSTALLING_ENABLED"]["value"]) is True
    assert env["PLUGIN_REMOTE_INSTALLING_HOST"]["value"] == "127.0.0.1"
    assert [p["port"] for p in get(objects, "Service", "plugin-daemon")["spec"]["ports"]] == [5002]


def celery_app_of(probe):
    command = probe["exec"]["command"]
    match = re.search(r"celery -A (\S+) inspect ping", " ".join(command))
    assert match, command
    return match.group(1)


@pytest.mark.parametrize("version, app", [
    # api/app.py defines `celery` at every 1.x tag; api/celery_healthcheck.py is absent at 1.13.3, present at 1.14.2.
    ("1.13.3", "app.celery"),
    ("1.13.0", "app.celery"),
    ("1.14.0", "celery_healthcheck.celery"),
    ("1.14.2", "celery_healthcheck.celery"),
    ("1.17.1", "celery_healthcheck.celery"),
])
def test_worker_probes_ping_with_a_celery_app_the_image_ships(version, app):
    worker = container(render_chart(at_version(version)), "Deployment", "worker")
    for probe in ("startupProbe", "livenessProbe"):
        assert celery_app_of(worker[probe]) == app, probe


@pytest.mark.parametrize("values, release, fullname", [
    (scenario("v1.17.1"), "dify", "dify"),
    (scenario("seed-https"), "dify", "dify"),
    (scenario("root-path"), "prod", "prod-dify"),
], ids=["v1.17.1", "seed-https", "root-path-release-prod"])
def test_web_server_side_requests_use_the_in_cluster_api(values, release, fullname):
    # The web renders console pages on the server (Dify >= 1.15) and fetches SERVER_CONSOLE_API_URL, else
    # CONSOLE_API_URL: the public https URL behind the cluster's self-signed certificate, which Node refuses.
    objects = render_chart(values, name=release)
    env = env_of(container(objects, "Deployment", f"{fullname}-web"))
    assert env["SERVER_CONSOLE_API_URL"]["value"] == f"http://{fullname}-api:5001"
    assert get(objects, "Service", f"{fullname}-api")["spec"]["ports"][0]["port"] == 5001
    # The browser still gets the public URL.
    assert env["CONSOLE_API_URL"]["value"].startswith(values["external"]["scheme"] + "://")


def test_collaboration_runs_by_default_from_dify_1_14():
    # 1.14.2: the api's CollaborationConfig defaults ENABLE_COLLABORATION_MODE to true and compose starts
    # api_websocket (its profile is in the default COMPOSE_PROFILES); nginx routes /socket.io/ to it.
    objects = render_chart(at_version("1.14.2"))
    get(objects, "Deployment", "api-websocket")
    get(objects, "Ingress", "api-websocket")
    for name in ("api", "worker"):
        assert env_of(container(objects, "Deployment", name))["ENABLE_COLLABORATION_MODE"]["value"] == "true", name
    assert env_of(container(objects, "Deployment", "web"))["NEXT_PUBLIC_SOCKET_URL"]["value"] == "wss://192.0.2.10/dify"


@pytest.mark.parametrize("version", ["1.14.2", "1.17.1"])
def test_collaboration_off_is_told_to_dify_since_it_defaults_on(version):
    # Dify's default is on: leaving the variable out would leave the UI using a WebSocket nothing serves.
    objects = render_chart(merge(at_version(version), {"collaboration": {"enabled": False}}))
    assert not [o for o in objects if o["metadata"]["name"] == "dify-api-websocket"]
    for name in ("api", "worker", "beat"):
        assert env_of(container(objects, "Deployment", name))["ENABLE_COLLABORATION_MODE"]["value"] == "false", name


def test_collaboration_can_be_switched_on_for_dify_1_14():
    objects = render_chart(merge(at_version("1.14.2"), {"collaboration": {"enabled": True}}))
    get(objects, "Deployment", "api-websocket")


@pytest.mark.parametrize("version", ["1.14.2", "1.17.1"])
def test_api_websocket_takes_as_many_connections_as_dify_gives_it(version):
    # The api entrypoint runs gunicorn with --worker-connections ${SERVER_WORKER_CONNECTIONS:-10}: ten open
    # WebSockets would fill the one worker. Compose gives api_websocket 1000 connections and a 360 s timeout.
    env = env_of(container(render_chart(at_version(version)), "Deployment", "api-websocket"))
    assert env["SERVER_WORKER_CONNECTIONS"]["value"] == "1000"
    assert env["GUNICORN_TIMEOUT"]["value"] == "360"


def test_plugin_daemon_logs_in_to_an_external_redis_as_the_same_user_as_dify():
    # The daemon reads REDIS_USERNAME (Config, 0.5.3 and 0.6.1); without it an ACL user's password is sent for
    # "default" and Redis refuses it.
    objects = render_chart(merge(scenario("external-services"), {"externalRedis": {"username": "dify-acl"}}))
    api = env_of(container(objects, "Deployment", "api"))
    daemon = env_of(container(objects, "Deployment", "plugin-daemon"))
    assert api["REDIS_USERNAME"]["value"] == "dify-acl"
    for name in ("REDIS_USERNAME", "REDIS_PASSWORD", "REDIS_HOST", "REDIS_PORT", "REDIS_USE_SSL"):
        assert daemon[name] == api[name], name


@pytest.mark.parametrize("version", ["1.13.3", "1.14.2"])
def test_plugin_packages_up_to_the_daemons_limit_are_accepted(version):
    # The api caps plugin packages (uploads and marketplace downloads) at PLUGIN_MAX_PACKAGE_SIZE, 15 MiB by
    # default (configs/feature); compose raises it to the daemon's own limit, 50 MiB, for api and worker.
    objects = render_chart(at_version(version))
    for name in ("api", "worker"):
        assert env_of(container(objects, "Deployment", name))["PLUGIN_MAX_PACKAGE_SIZE"]["value"] == "52428800", name
    daemon = env_of(container(objects, "Deployment", "plugin-daemon"))
    assert daemon.get("MAX_PLUGIN_PACKAGE_SIZE", {"value": "52428800"})["value"] == "52428800"


@pytest.mark.parametrize("version", ["1.13.3", "1.14.2"])
def test_api_publishes_no_swagger_ui_and_sends_no_analytics(version):
    # Dify defaults SWAGGER_UI_ENABLED to true: every API blueprint (/console/api, /api, /v1, all routed through
    # the Ingress) then serves its Swagger UI and spec without login. Compose turns it off, and sets
    # SCARF_NO_ANALYTICS=true (shared env of api, worker and beat).
    objects = render_chart(at_version(version))
    for name in ("api", "worker", "beat"):
        env = env_of(container(objects, "Deployment", name))
        assert env["SWAGGER_UI_ENABLED"]["value"] == "false", name
        assert env["SCARF_NO_ANALYTICS"]["value"] == "true", name


def test_web_listens_on_every_address_of_the_pod():
    # Next.js' standalone server binds to $HOSTNAME, which the container runtime sets to the pod's name: the web then
    # listens on the pod IP only, and `kubectl port-forward` (which dials localhost in the pod) is refused.
    env = env_of(container(render_chart(scenario("v1.13.3")), "Deployment", "web"))
    assert env["HOSTNAME"]["value"] == "0.0.0.0"


def test_plugin_daemon_verifies_signatures_and_goes_direct_by_default():
    env = env_of(container(render_chart(scenario("v1.13.3")), "Deployment", "plugin-daemon"))
    assert go_bool(env["FORCE_VERIFYING_SIGNATURE"]["value"]) is True
    assert int(env["PYTHON_ENV_INIT_TIMEOUT"]["value"]) == 120
    assert not {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "PIP_MIRROR_URL"} & env.keys()


def test_plugin_daemon_installs_through_a_proxy_but_reaches_the_release_directly():
    # The daemon calls the api by its Service name with Go's client, which honours HTTP(S)_PROXY: without the
    # release's names in NO_PROXY every call to the api would go to the corporate proxy and fail.
    values = merge(scenario("v1.13.3"), {"pluginDaemon": {
        "proxy": {"http": "http://proxy.corp:3128", "https": "http://proxy.corp:3128", "noProxy": "10.20.0.0/16, .models.corp"},
        "pipIndexUrl": "https://nexus.corp/repository/pypi/simple", "installTimeout": 600,
        "forceVerifyingSignature": False}})
    objects = render_chart(values)
    env = env_of(container(objects, "Deployment", "plugin-daemon"))
    assert env["HTTP_PROXY"]["value"] == env["HTTPS_PROXY"]["value"] == "http://proxy.corp:3128"
    direct = env["NO_PROXY"]["value"].split(",")
    api_host = re.match(r"https?://([^:/]+)", env["DIFY_INNER_API_URL"]["value"]).group(1)
    assert api_host in direct
    assert {"localhost", "127.0.0.1", ".svc", ".cluster.local", "10.20.0.0/16", ".models.corp"} <= set(direct)
    assert env["PIP_MIRROR_URL"]["value"] == "https://nexus.corp/repository/pypi/simple"
    assert int(env["PYTHON_ENV_INIT_TIMEOUT"]["value"]) == 600
    assert go_bool(env["FORCE_VERIFYING_SIGNATURE"]["value"]) is False


@pytest.mark.parametrize("bad", [{"proxy": {"https": "proxy.corp:3128"}}, {"pipIndexUrl": "nexus.corp/simple"},
                                 {"installTimeout": 0}, {"proxy": {"socks": "x"}}],
                         ids=["proxy-without-scheme", "index-without-scheme", "zero-timeout", "unknown-key"])
def test_plugin_daemon_rejects_values_it_cannot_use(bad):
    with pytest.raises(HelmError):
        render_chart(merge(scenario("v1.13.3"), {"pluginDaemon": bad}))


def test_plugin_installs_trust_the_given_cas_where_uv_looks_for_them():
    # uv gets only VIRTUAL_ENV, PATH, UV_CACHE_DIR and the proxies from the daemon (setup_python_environment.go at
    # 0.5.3 and 0.6.1), so SSL_CERT_FILE cannot reach it: --native-tls makes it read the system bundle, which must then
    # hold the extra CAs next to the image's own.
    values = merge(scenario("v1.13.3"), {"pluginDaemon": {"caBundle": {"configMap": "corp-ca", "key": "bundle.pem"}}})
    spec = pod_spec(get(render_chart(values), "Deployment", "plugin-daemon"))
    (init,) = spec["initContainers"]
    daemon = spec["containers"][0]
    script = init["command"][-1]
    assert script.startswith("cat /etc/ssl/certs/ca-certificates.crt /extra-ca/bundle.pem > /trust/")
    written = script.split("> ")[1]
    init_mounts = {m["name"]: m["mountPath"] for m in init["volumeMounts"]}
    system = next(m for m in daemon["volumeMounts"] if m["mountPath"] == "/etc/ssl/certs/ca-certificates.crt")
    assert written == f"{init_mounts[system['name']]}/{system['subPath']}"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[system["name"]] == {"name": system["name"], "emptyDir": {}}
    assert volumes["extra-ca"]["configMap"]["name"] == "corp-ca"
    env = env_of(daemon)
    assert "--native-tls" in env["PIP_EXTRA_ARGS"]["value"].split()
    assert env["SSL_CERT_FILE"]["value"] == env["REQUESTS_CA_BUNDLE"]["value"] == "/etc/ssl/certs/ca-certificates.crt"


def test_plugin_daemon_has_no_trust_store_step_without_a_ca_bundle():
    spec = pod_spec(get(render_chart(scenario("v1.13.3")), "Deployment", "plugin-daemon"))
    assert "initContainers" not in spec
    assert "PIP_EXTRA_ARGS" not in env_of(spec["containers"][0])
