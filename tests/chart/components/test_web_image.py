"""Components > web image: which web image serves which path. Next.js bakes the base path in at build time, so the
stock langgenius/dify-web serves "/" only; the project publishes ghcr.io/dify-gitops/dify-web:<Dify version> built
for "/dify"; any other path needs the user's own build. What NOTES.txt says about it: install/test_install_upgrade.py."""

import pytest

from conftest import get, merge, pod_spec, render_chart, render_error, scenario

PROJECT_WEB = "ghcr.io/dify-gitops/dify-web"


def web_image(values):
    return pod_spec(get(render_chart(values), "Deployment", "web"))["containers"][0]["image"]


def at_path(path, **images):
    return merge(scenario("v1.13.3"), {"expose": {"path": path}, "images": images})


@pytest.mark.parametrize("values, expected", [
    (at_path("/"), "langgenius/dify-web:1.13.3"),
    (merge(at_path("/"), {"images": {"dify": {"repository": "mirror.example.com/langgenius/dify"}}}),
     "mirror.example.com/langgenius/dify-web:1.13.3"),
    (at_path("/dify"), f"{PROJECT_WEB}:1.13.3"),
    # The project's image is tagged with the Dify version, also when the Dify tag is a digest.
    (merge(at_path("/dify"), {"images": {"dify": {"tag": "sha256:" + "b" * 64, "version": "1.17.1"}}}),
     f"{PROJECT_WEB}:1.17.1"),
    (merge(at_path("/dify"), {"images": {"dify": {"tag": "v1.14.2"}}}), f"{PROJECT_WEB}:1.14.2"),
    (at_path("/dify", web={"tag": "1.13.3-rebuilt"}), f"{PROJECT_WEB}:1.13.3-rebuilt"),
], ids=["root-stock", "root-mirror", "dify-project", "dify-digest", "dify-v-tag", "dify-own-tag"])
def test_default_web_image_follows_the_path(values, expected):
    assert web_image(values) == expected


@pytest.mark.parametrize("path", ["/", "/dify", "/ai/dify"])
def test_a_web_image_the_user_names_serves_any_path(path):
    values = at_path(path, web={"repository": "registry.example.com/team/dify-web", "tag": "x1"})
    assert web_image(values) == "registry.example.com/team/dify-web:x1"


@pytest.mark.parametrize("path", ["/ai", "/dify2", "/tools/dify"])
def test_should_fail_early_if_no_web_image_exists_for_the_path(path, helm):
    message = render_error(at_path(path), helm=helm)
    assert f'expose.path "{path}"' in message
    assert "images.web.repository" in message and "images.web.tag" in message
    assert f"NEXT_PUBLIC_BASE_PATH={path}" in message
    assert "web-image workflow" in message


def test_should_fail_early_if_dify_predates_base_path_support(helm):
    message = render_error(merge(scenario("v0.14.3"), {"expose": {"path": "/dify"}}), helm=helm)
    assert "Dify 0.14.3" in message and "expose.path=/" in message
