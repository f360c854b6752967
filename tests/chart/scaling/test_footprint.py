"""Scaling > footprint: the README's table of requests and limits, and the totals of `dify-gitops preflight`, are
the ones the chart's rendering gives."""

import importlib.machinery
import importlib.util
import re

from conftest import CHART, REPO, helm_binary

README = (CHART / "README.md").read_text()


def footprint_module():
    """scripts/chart-footprint (a script, no .py) as a module: the one derivation of the table."""
    loader = importlib.machinery.SourceFileLoader("chart_footprint", str(REPO / "scripts" / "chart-footprint"))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_readme_footprint_is_the_rendering():
    helm_binary("helm")  # the script renders with helm: fail naming it when it is missing
    table = footprint_module().table()
    assert (CHART / "footprint.md").read_text() == table, \
        "chart/dify/footprint.md is stale: run scripts/chart-footprint, then scripts/chart-docs"
    assert table in README, "README.md lacks the current footprint: run scripts/chart-docs"


def test_preflights_capacity_check_reads_the_same_numbers():
    helm_binary("helm")
    assert (REPO / "src" / "cluster" / "footprint.rs").read_text() == footprint_module().rust(), \
        "src/cluster/footprint.rs is stale: run scripts/chart-footprint"


def test_the_totals_add_up_per_component_at_each_dify_version():
    # An independent reading of the README's own rows: a version's total is the per-pod requests times the pods of
    # the components rendered from that version on.
    rows = re.findall(r"^\| ([a-z-]+) \| (?:Deployment|StatefulSet) \| ≥ (\d+)\.(\d+) \| (\d+m?) / (\d+)(Mi|Gi) \|",
                      README, re.M)
    assert {name for name, *_ in rows} >= {"api", "api-websocket", "worker", "web", "beat", "plugin-daemon", "postgresql"}
    assert {name for name, major, minor, *_ in rows if (int(major), int(minor)) > (1, 13)} == {"api-websocket"}
    for version in ((1, 13), (1, 14)):
        counted = [r for r in rows if (int(r[1]), int(r[2])) <= version]
        millicpu = sum(int(c[:-1]) if c.endswith("m") else int(c) * 1000 for _, _, _, c, _, _ in counted)
        mebibytes = sum(int(n) * (1024 if unit == "Gi" else 1) for _, _, _, _, n, unit in counted)
        cpu, gib = re.search(rf"^\| Dify {version[0]}\.{version[1]}, default \| ([\d.]+) CPU / ([\d.]+) GiB \|",
                             README, re.M).groups()
        assert (float(cpu), float(gib)) == (millicpu / 1000, round(mebibytes / 1024, 2)), version
