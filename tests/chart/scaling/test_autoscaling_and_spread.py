"""Scaling > HorizontalPodAutoscalers, spread across nodes, and the layouts the chart refuses (naming the fix)."""

import pytest

from conftest import SCENARIOS, find, get, merge, pod_spec, render_chart, render_error, scenario

AUTOSCALED = ["api", "worker", "web"]
SPREAD = {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
          "matchLabelKeys": ["pod-template-hash"]}


def spread_of(deployment):
    return pod_spec(deployment).get("topologySpreadConstraints")


def test_should_render_an_hpa_per_autoscaled_component_and_leave_it_the_replicas(helm):
    objects = render_chart(scenario("autoscaling"), helm=helm)  # validated against the strict schemas
    assert sorted(h["metadata"]["name"] for h in find(objects, "HorizontalPodAutoscaler")) == \
        sorted(f"dify-{name}" for name in AUTOSCALED)
    for name in AUTOSCALED:
        hpa = get(objects, "HorizontalPodAutoscaler", name)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"dify-{name}"}
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
        assert hpa["spec"]["metrics"] == [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
        # A fixed count would fight the HPA on every helm upgrade or Flux reconcile.
        assert "replicas" not in get(objects, "Deployment", name)["spec"], name


def test_should_take_the_hpa_bounds_and_target_from_values():
    values = merge(scenario("autoscaling"), {"web": {"autoscaling": {
        "minReplicas": 3, "maxReplicas": 9, "targetCPUUtilizationPercentage": 150}}})
    hpa = get(render_chart(values), "HorizontalPodAutoscaler", "web")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 150


@pytest.mark.parametrize("scenario_name", [s for s in SCENARIOS if s != "autoscaling"])
def test_should_render_no_hpa_by_default(scenario_name):
    objects = render_chart(scenario(scenario_name))
    assert not find(objects, "HorizontalPodAutoscaler")
    for deployment in find(objects, "Deployment"):
        assert "replicas" in deployment["spec"], deployment["metadata"]["name"]


def test_should_spread_autoscaled_pods_across_nodes():
    objects = render_chart(scenario("autoscaling"))
    for name in AUTOSCALED:
        [constraint] = spread_of(get(objects, "Deployment", name))
        selector = constraint.pop("labelSelector")
        assert constraint == SPREAD
        assert selector == {"matchLabels": get(objects, "Deployment", name)["spec"]["selector"]["matchLabels"]}


@pytest.mark.parametrize("name, replicas", [("rwx-files", {"api": 3, "worker": 2}), ("s3-storage", {"api": 2, "worker": 2})])
def test_should_spread_a_component_if_it_has_more_than_one_replica(name, replicas):
    values = merge(scenario(name), {"web": {"replicas": 2}, "sandbox": {"replicas": 2}, "ssrfProxy": {"replicas": 3}})
    objects = render_chart(values)
    for component, count in {**replicas, "web": 2, "sandbox": 2, "ssrf-proxy": 3}.items():
        deployment = get(objects, "Deployment", component)
        assert deployment["spec"]["replicas"] == count
        assert spread_of(deployment)[0]["whenUnsatisfiable"] == "ScheduleAnyway", component


def test_should_not_spread_single_pods():
    for deployment in find(render_chart(scenario("seed-https")), "Deployment"):
        assert spread_of(deployment) is None, deployment["metadata"]["name"]


FILES_FIX = ("Set storage.files.accessMode=ReadWriteMany with a class that offers it in "
             "storage.files.storageClassName (e.g. Nutanix Files), or storage.files.type=s3")


@pytest.mark.parametrize("component, override, asks", [
    ("api", {"replicas": 2}, "api.replicas=2"),
    ("worker", {"replicas": 3}, "worker.replicas=3"),
    ("api", {"autoscaling": {"enabled": True}}, "api.autoscaling.enabled=true"),
    ("worker", {"autoscaling": {"enabled": True}}, "worker.autoscaling.enabled=true"),
])
def test_should_refuse_to_scale_api_or_worker_on_a_read_write_once_files_volume(component, override, asks, helm):
    values = merge(scenario("seed-https"), {component: override})
    assert values["storage"].get("files", {}).get("accessMode", "ReadWriteOnce") == "ReadWriteOnce"
    message = render_error(values, helm=helm)
    assert f"{asks} asks for more than one {component} pod" in message
    assert "the files volume is ReadWriteOnce (storage.files.accessMode)" in message
    assert FILES_FIX in message
    assert f"or set {component}.replicas=1 and {component}.autoscaling.enabled=false" in message


def test_web_scales_out_whatever_the_files_volume():
    # web mounts no files volume: it may scale out beside a ReadWriteOnce one.
    values = merge(scenario("seed-https"), {"web": {"replicas": 2, "autoscaling": {"enabled": True}}})
    objects = render_chart(values)
    assert get(objects, "HorizontalPodAutoscaler", "web")
    assert spread_of(get(objects, "Deployment", "web"))


@pytest.mark.parametrize("key, override, asks, why", [
    ("beat", {"replicas": 2}, "beat.replicas=2", "two beats would schedule every periodic task twice"),
    ("beat", {"autoscaling": {"enabled": True}}, "beat.autoscaling.enabled=true", "periodic task twice"),
    ("pluginDaemon", {"replicas": 2}, "pluginDaemon.replicas=2", "one ReadWriteOnce volume that one pod mounts"),
    ("pluginDaemon", {"autoscaling": {"enabled": True}}, "pluginDaemon.autoscaling.enabled=true",
     "one ReadWriteOnce volume"),
])
def test_should_refuse_a_second_beat_or_plugin_daemon(key, override, asks, why, helm):
    # Even with files on RWX: these two never run twice, whatever the files volume.
    message = render_error(merge(scenario("rwx-files"), {key: override}), helm=helm)
    assert f"{asks}: {key} runs exactly one pod" in message and why in message
    assert f"Set {key}.replicas=1 and {key}.autoscaling.enabled=false" in message


def test_should_refuse_hpa_bounds_that_cross(helm):
    values = merge(scenario("autoscaling"), {"api": {"autoscaling": {"minReplicas": 5, "maxReplicas": 3}}})
    message = render_error(values, helm=helm)
    assert "api.autoscaling.minReplicas (5) is above api.autoscaling.maxReplicas (3)" in message


@pytest.mark.parametrize("override, where", [
    ({"api": {"autoscaling": {"maxReplicas": 0}}}, "api/autoscaling/maxReplicas"),
    ({"web": {"autoscaling": {"targetCPUUtilization": 80}}}, "web/autoscaling"),
    ({"worker": {"autoscaling": {"enabled": "yes"}}}, "worker/autoscaling/enabled"),
])
def test_the_schema_refuses_malformed_autoscaling(override, where):
    assert where in render_error(merge(scenario("autoscaling"), override))
