"""Values > contract: values.yaml holds no environment value, required keys fail by name, the schema is strict."""

import json
import re

import jsonschema
import pytest
import yaml

from conftest import CHART, render_error, scenario

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def documented_required_keys():
    """Keys whose values.yaml description (a helm-docs `# --` comment) starts "Required.", in file order."""
    keys, stack, pending = [], [], False
    for line in VALUES_TEXT.splitlines():
        stripped = line.strip()
        if stripped.startswith("# -- "):
            pending = stripped.startswith("# -- Required. ")
            continue
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip())
        key = stripped.split(":", 1)[0]
        stack = [(i, k) for i, k in stack if i < indent] + [(indent, key)]
        if pending:
            keys.append(".".join(k for _, k in stack))
        pending = False
    return keys


def chart_required_keys():
    """The chart's one list of required keys, dify.requiredKeys in templates/_preflight.tpl, in its order."""
    text = (CHART / "templates" / "_preflight.tpl").read_text()
    body = re.search(r'define "dify.requiredKeys" -\}\}\n(.*?)\{\{- end', text, re.S).group(1)
    return [entry["key"] for entry in yaml.safe_load(body)]


REQUIRED = documented_required_keys()


def test_the_chart_requires_exactly_the_keys_values_yaml_documents_as_required():
    assert len(REQUIRED) >= 8, REQUIRED
    assert chart_required_keys() == REQUIRED


def lookup(values, dotted):
    for part in dotted.split("."):
        values = values[part]
    return values


def with_key(values, dotted, value):
    values = json.loads(json.dumps(values))
    *parents, last = dotted.split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return values


@pytest.mark.parametrize("key", REQUIRED)
def test_required_key_exists_and_is_empty_in_values_yaml(key):
    assert lookup(VALUES, key) == ""


@pytest.mark.parametrize("key", REQUIRED)
def test_should_fail_naming_the_key_if_required_key_is_empty(key, helm):
    message = render_error(with_key(scenario("seed-https"), key, ""), helm=helm)
    assert key in message


@pytest.mark.parametrize(
    "pattern, what",
    [
        (r"\b(?:\d{1,3}\.){3}\d{1,3}\b", "an IPv4 address"),
        (r"kommander-traefik", "the NKP IngressClass"),
        (r"nutanix-volume", "the NKP StorageClass"),
        (r"(?<![A-Za-z0-9])sk-", "an OpenAI-style key"),
        (r"https?://", "a URL"),
    ],
)
def test_values_yaml_holds_no_environment_value(pattern, what):
    hits = [line for line in VALUES_TEXT.splitlines() if re.search(pattern, line)]
    assert not hits, f"values.yaml holds {what}: {hits}"


def test_values_yaml_validates_against_the_schema():
    jsonschema.validate(VALUES, SCHEMA)


@pytest.mark.parametrize("name", sorted(p.name for p in (CHART / "ci").glob("*-values.yaml")))
def test_scenario_values_validate_against_the_schema(name):
    jsonschema.validate(yaml.safe_load((CHART / "ci" / name).read_text()), SCHEMA)


def test_should_reject_an_unknown_key(helm):
    message = render_error({**scenario("seed-https"), "expse": {"path": "/dify"}}, helm=helm)
    assert "additional properties 'expse' not allowed" in message


def test_should_reject_an_unknown_key_of_a_data_store(helm):
    message = render_error({**scenario("seed-https"), "postgresql": {"enabled": True, "sise": "1Gi"}}, helm=helm)
    assert "additional properties 'sise' not allowed" in message


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("expose.path", "/dify/", "expose.path"),
        ("expose.path", "dify", "expose.path"),
        ("external.scheme", "ftp", "external.scheme"),
        ("external.host", "https://192.0.2.10", "external.host"),
        ("images.dify.tag", "latest", "images.dify.version"),
        ("storage.files.type", "s3", "storage.files.s3"),
        ("postgresql.enabled", False, "externalDatabase.host"),
        ("redis.enabled", False, "externalRedis.host"),
        ("weaviate.enabled", False, "externalWeaviate.endpoint"),
    ],
)
def test_preflight_should_fail_naming_the_fix_if_values_conflict(key, value, expected, helm):
    message = render_error(with_key(scenario("seed-https"), key, value), helm=helm)
    # The schema names a key as a JSON pointer (/expose/path), the templates as a dotted path.
    assert expected in message or "/" + expected.replace(".", "/") in message


def test_should_refuse_match_host_with_an_ip(helm):
    values = with_key(scenario("seed-https"), "expose.matchHost", True)
    assert "expose.matchHost" in render_error(values, helm=helm)


def leaf_keys(values, prefix=""):
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and not all(k in ("repository", "tag") for k in value):
            yield from leaf_keys(value, path + ".")
        else:
            yield path


def test_readme_values_table_documents_every_key():
    readme = (CHART / "README.md").read_text()
    shared = ("resources", "extraEnv", "nodeSelector", "tolerations", "affinity", "podAnnotations",
              "podSecurityContext", "containerSecurityContext")
    def documented(key):  # the key itself or one of its parents has a row
        parts = key.split(".")
        return any(f"`{'.'.join(parts[:n])}`" in readme for n in range(min(2, len(parts)), len(parts) + 1))
    missing = [k for k in leaf_keys(VALUES) if not documented(k) and k.split(".")[1:2] not in ([s] for s in shared)]
    assert not missing, f"README.md values table lacks {missing}"
