"""Routing > Ingress: which Service and which path each public URL reaches through Traefik.

The model follows Traefik's Kubernetes Ingress provider: each Ingress path is a router with rule PathPrefix(`p`)
(pathType Prefix, a character prefix) or Path(`p`) (Exact), priority = length of the rule string, router
annotations of its Ingress (middlewares, entrypoints, tls).
"""

import re

import pytest
import yaml

from conftest import find, get, render_chart, scenario


def routers(objects):
    middlewares = {m["metadata"]["name"]: m["spec"]["stripPrefix"]["prefixes"] for m in find(objects, "Middleware")}
    out = []
    for ing in find(objects, "Ingress"):
        annotations = ing["metadata"].get("annotations", {})
        strip = []
        for ref in filter(None, annotations.get("traefik.ingress.kubernetes.io/router.middlewares", "").split(",")):
            ns_name = ref.strip().removesuffix("@kubernetescrd")
            assert ns_name.startswith("dify-"), f"middleware {ref} is not in the release namespace"
            strip += middlewares[ns_name.removeprefix("dify-")]
        for rule in ing["spec"]["rules"]:
            for p in rule["http"]["paths"]:
                text = f"{'PathPrefix' if p['pathType'] == 'Prefix' else 'Path'}(`{p['path']}`)"
                out.append({"rule": text, "prefix": p["pathType"] == "Prefix", "path": p["path"],
                            "service": p["backend"]["service"]["name"], "strip": strip})
    return out


def route(objects, url_path):
    """(service, path the service sees) for a request, or None when no router matches."""
    matching = [r for r in routers(objects)
                if (url_path.startswith(r["path"]) if r["prefix"] else url_path == r["path"])]
    if not matching:
        return None
    best = max(matching, key=lambda r: len(r["rule"]))
    seen = url_path
    for prefix in best["strip"]:
        if seen.startswith(prefix):
            seen = seen[len(prefix):] or "/"
            break
    return best["service"], seen


SUBPATH_ROUTES = [
    ("/dify/console/api/setup", ("dify-api", "/console/api/setup")),
    ("/dify/api/meta", ("dify-api", "/api/meta")),
    ("/dify/v1/chat-messages", ("dify-api", "/v1/chat-messages")),
    ("/dify/files/abc/file-preview", ("dify-api", "/files/abc/file-preview")),
    ("/dify/mcp/server/abc/mcp", ("dify-api", "/mcp/server/abc/mcp")),
    ("/dify/triggers/webhook/abc", ("dify-api", "/triggers/webhook/abc")),
    ("/dify/e/abc123/hook", ("dify-plugin-daemon", "/e/abc123/hook")),
    ("/dify/explore/apps", ("dify-web", "/dify/explore/apps")),
    ("/dify/apps", ("dify-web", "/dify/apps")),
    ("/dify/app/abc/workflow", ("dify-web", "/dify/app/abc/workflow")),
    ("/dify/_next/static/chunk.js", ("dify-web", "/dify/_next/static/chunk.js")),
    ("/dify/", ("dify-web", "/dify/")),
    ("/dify", ("dify-web", "/dify")),
    ("/difyx", None),
    ("/dify-other/apps", None),
    ("/apps", None),
]
ROOT_ROUTES = [
    ("/console/api/setup", ("dify-api", "/console/api/setup")),
    ("/v1/chat-messages", ("dify-api", "/v1/chat-messages")),
    ("/e/abc123", ("dify-plugin-daemon", "/e/abc123")),
    ("/explore/apps", ("dify-web", "/explore/apps")),
    ("/apps", ("dify-web", "/apps")),
    ("/", ("dify-web", "/")),
]


@pytest.mark.parametrize("url_path, expected", SUBPATH_ROUTES)
def test_should_route_under_the_path_if_expose_path_is_dify(url_path, expected, helm):
    assert route(render_chart(scenario("seed-https"), helm=helm), url_path) == expected


@pytest.mark.parametrize("url_path, expected", ROOT_ROUTES)
def test_should_route_at_the_root_if_expose_path_is_slash(url_path, expected, helm):
    assert route(render_chart(scenario("root-path"), helm=helm), url_path) == expected


def test_should_not_create_a_middleware_if_expose_path_is_slash():
    objects = render_chart(scenario("root-path"))
    assert not find(objects, "Middleware")
    for ing in find(objects, "Ingress"):
        assert "traefik.ingress.kubernetes.io/router.middlewares" not in ing["metadata"].get("annotations", {})


def test_strip_prefix_middleware_removes_the_path():
    middleware = get(render_chart(scenario("seed-https")), "Middleware", "strip-prefix")
    assert middleware["apiVersion"] == "traefik.io/v1alpha1"
    assert middleware["spec"] == {"stripPrefix": {"prefixes": ["/dify"]}}


def test_web_is_never_stripped():
    web = get(render_chart(scenario("seed-https")), "Ingress", "web")
    assert "traefik.ingress.kubernetes.io/router.middlewares" not in web["metadata"].get("annotations", {})


@pytest.mark.parametrize("name", ["seed-https", "v1.17.1", "external-services"])
def test_should_use_the_tls_entrypoint_if_external_scheme_is_https(name):
    for ing in find(render_chart(scenario(name)), "Ingress"):
        annotations = ing["metadata"]["annotations"]
        assert annotations["traefik.ingress.kubernetes.io/router.entrypoints"] == "websecure"
        assert annotations["traefik.ingress.kubernetes.io/router.tls"] == "true"


def test_should_not_set_tls_annotations_if_external_scheme_is_http():
    for ing in find(render_chart(scenario("root-path")), "Ingress"):
        annotations = ing["metadata"].get("annotations", {})
        assert not any("router.tls" in k or "router.entrypoints" in k for k in annotations)


def test_every_ingress_uses_the_class_from_values(scenario_name):
    values = scenario(scenario_name)
    for ing in find(render_chart(values), "Ingress"):
        assert ing["spec"]["ingressClassName"] == values["expose"]["ingressClassName"]


def test_no_ip_address_in_any_ingress(scenario_name):
    for ing in find(render_chart(scenario(scenario_name)), "Ingress"):
        assert not re.search(r"\b(?:\d{1,3}\.){3}\d{1,3}\b", yaml.safe_dump(ing)), ing["metadata"]["name"]


def test_should_match_the_host_if_expose_match_host_is_true():
    for ing in find(render_chart(scenario("external-services")), "Ingress"):
        assert [r["host"] for r in ing["spec"]["rules"]] == ["dify.example.com"]


def test_should_not_route_plugin_endpoints_if_dify_is_older_than_1_0():
    objects = render_chart(scenario("v0.14.3"))
    assert not find(objects, "Ingress", "plugin-daemon")
    assert route(objects, "/e/abc") == ("dify-web", "/e/abc")


@pytest.mark.parametrize(
    "url_path, expected",
    [("/dify/socket.io/", ("dify-api-websocket", "/socket.io/")),
     ("/dify/socket.io/?EIO=4&transport=websocket", ("dify-api-websocket", "/socket.io/?EIO=4&transport=websocket")),
     ("/dify/apps", ("dify-web", "/dify/apps"))],
)
def test_should_route_socket_io_to_api_websocket_if_dify_is_1_14_or_later(url_path, expected, helm):
    assert route(render_chart(scenario("v1.17.1"), helm=helm), url_path) == expected


def test_should_not_route_socket_io_if_dify_is_older_than_1_14():
    objects = render_chart(scenario("v1.13.3"))
    assert not find(objects, "Ingress", "api-websocket")
    assert route(objects, "/dify/socket.io/") == ("dify-web", "/dify/socket.io/")
