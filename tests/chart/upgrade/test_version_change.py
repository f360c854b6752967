"""Upgrade > a Dify version change: the pre-upgrade backup Job and the 0.x -> 1.x guard, on the local kube-apiserver.

Both read the installed version with lookup, so they render only against a cluster holding a release: each test
installs one (hooks skipped, no pod runs here), then renders the upgrade with `helm template --dry-run=server
--is-upgrade` or runs it with `helm upgrade`. The dump script the chart renders runs for real against Debian's
PostgreSQL 15, started by the test on loopback as the postgres user.
"""

import json
import secrets
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import yaml

from backup_stores import PG_BIN, databases, free_port, postgres  # noqa: F401 - fixtures
from cluster import as_pod, dry_run_pod, helm_run, installed, kubectl, namespace, render_upgrade, with_tag
from conftest import CHART, get, helm_binary, merge, render_chart, render_error, run, scenario

pytestmark = pytest.mark.install

ACK = {"upgrade": {"acknowledgePluginMigration": True}}


def backup_objects(objects):
    return [o for o in objects if o["metadata"]["name"] == "dify-backup"]


# Backup: rendered exactly when images.dify.tag changes.

def test_backup_job_renders_only_when_the_dify_tag_changes(kube, helm):
    ns = installed(kube, helm)
    assert backup_objects(render_upgrade(kube, helm, ns, scenario("v1.13.3"))) == [], "same tag: no backup"
    objects = render_upgrade(kube, helm, ns, with_tag("v1.13.3", "1.14.2"))
    job, pvc = get(objects, "Job", "backup"), get(objects, "PersistentVolumeClaim", "backup")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    assert pvc["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    assert int(pvc["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert pvc["spec"]["storageClassName"] == "nutanix-volume"
    assert job["spec"]["backoffLimit"] == 0, "a failed dump must fail the Job at once"
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "postgres:15.14-alpine", "the bundled PostgreSQL's image and so its pg_dump"
    env = {e["name"]: e for e in container["env"]}
    assert env["BACKUP_KEEP"]["value"] == "3"
    assert env["BACKUP_LABEL"]["value"] == "1.13.3-to-1.14.2"
    assert env["DATABASES"]["value"] == "dify dify_plugin"
    assert env["PGHOST"]["value"] == "dify-postgresql"
    assert env["PGPASSWORD"] == {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {
        "name": "dify-internal", "key": "postgres-password"}}}, "the password only through the Secret"
    assert dry_run_pod(kube, as_pod(job, ns)).returncode == 0, "the backup pod meets Pod Security restricted"
    # The version ConfigMap the next upgrade reads is part of every rendering.
    assert get(objects, "ConfigMap", "version")["data"] == {"difyTag": "1.14.2", "difyVersion": "1.14.2"}


def test_backup_is_off_with_backup_enabled_false(kube, helm):
    ns = installed(kube, helm)
    objects = render_upgrade(kube, helm, ns, with_tag("v1.13.3", "1.14.2", {"backup": {"enabled": False}}))
    assert backup_objects(objects) == []


def test_backup_takes_keep_size_and_class_from_values(kube, helm):
    ns = installed(kube, helm)
    values = with_tag("v1.13.3", "1.14.2", {"backup": {"keep": 7, "size": "50Gi", "storageClassName": "nfs"}})
    objects = render_upgrade(kube, helm, ns, values)
    env = {e["name"]: e.get("value") for e in get(objects, "Job", "backup")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BACKUP_KEEP"] == "7"
    pvc = get(objects, "PersistentVolumeClaim", "backup")
    assert (pvc["spec"]["storageClassName"], pvc["spec"]["resources"]["requests"]["storage"]) == ("nfs", "50Gi")


def test_an_existing_backup_volume_is_not_created_again(kube, helm):
    ns = installed(kube, helm)
    objects = render_upgrade(kube, helm, ns, with_tag("v1.13.3", "1.14.2"))
    kubectl(kube, "create", "-n", ns, "-f", "-", stdin=json.dumps(get(objects, "PersistentVolumeClaim", "backup")))
    objects = render_upgrade(kube, helm, ns, with_tag("v1.13.3", "1.14.2"))
    assert [o["kind"] for o in backup_objects(objects)] == ["Job"]


def test_backup_dumps_the_external_database(kube, helm):
    ns = installed(kube, helm, "external-services")
    values = scenario("external-services")
    objects = render_upgrade(kube, helm, ns, merge(values, {"images": {"dify": {"tag": "1.14.2"}}}))
    env = {e["name"]: e for e in get(objects, "Job", "backup")["spec"]["template"]["spec"]["containers"][0]["env"]}
    db = values["externalDatabase"]
    assert env["PGHOST"]["value"] == db["host"]
    assert env["DATABASES"]["value"] == f"{db.get('database', 'dify')} {db.get('pluginDatabase', 'dify_plugin')}"
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == db["existingSecret"]
    assert env["PGSSLMODE"]["value"] == db["sslMode"]
    image = get(objects, "Job", "backup")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image == f"postgres:{values['backup']['image']['tag']}", "pg_dump of the server's version, named in values"


def test_an_external_database_needs_the_backup_image_named(helm):
    values = scenario("external-services")
    del values["backup"]
    error = render_error(values, helm=helm)
    assert "backup.image.tag is required with an external database" in error and "backup.enabled=false" in error
    render_chart(merge(values, {"backup": {"enabled": False}}), helm=helm)


def test_keep_must_be_at_least_one(helm):
    error = render_error(merge(scenario("v1.13.3"), {"backup": {"keep": 0}}), helm=helm)
    assert "/backup/keep" in error and "minimum" in error, error


def test_a_failed_backup_stops_the_upgrade_before_anything_changes(kube, helm):
    """A real `helm upgrade` with hooks: the backup Job fails (its Failed condition, as the Job controller would set
    it), so Helm stops: the release, its workloads and the recorded version stay the old ones."""
    ns = installed(kube, helm)
    path = Path(kube.get("TMPDIR", "/tmp")) / f"values-{uuid.uuid4().hex}.yaml"
    path.write_text(yaml.safe_dump(with_tag("v1.13.3", "1.14.2")))
    upgrade = subprocess.Popen([helm_binary(helm), "upgrade", "dify", str(CHART), "-n", ns, "--values", str(path),
                                "--timeout", "120s"], env=kube, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    try:
        deadline = time.time() + 60
        while kubectl(kube, "get", "job", "dify-backup", "-n", ns, check=False).returncode != 0:
            assert time.time() < deadline and upgrade.poll() is None, "no backup Job"
            time.sleep(0.5)
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        failed = [{"type": kind, "status": "True", "reason": "BackoffLimitExceeded", "lastTransitionTime": now,
                   "message": "Job has reached the specified backoff limit"} for kind in ("FailureTarget", "Failed")]
        kubectl(kube, "patch", "job", "dify-backup", "-n", ns, "--subresource=status", "--type=merge", "-p",
                json.dumps({"status": {"startTime": now, "failed": 1, "conditions": failed}}))
        _, stderr = upgrade.communicate(timeout=60)
    finally:
        if upgrade.poll() is None:
            upgrade.kill()
            upgrade.wait()
        path.unlink()
    assert upgrade.returncode != 0 and "pre-upgrade hooks failed" in stderr, stderr
    api = json.loads(kubectl(kube, "get", "deployment", "dify-api", "-n", ns, "-o", "json").stdout)
    assert api["spec"]["template"]["spec"]["containers"][0]["image"] == "langgenius/dify-api:1.13.3"
    version = json.loads(kubectl(kube, "get", "configmap", "dify-version", "-n", ns, "-o", "json").stdout)
    assert version["data"]["difyTag"] == "1.13.3", "the next attempt must see the version change and back up again"


# 0.x -> 1.x: refused until the plugin migration is acknowledged.

PLUGIN_STEPS = ("flask extract-plugins", "flask install-plugins", "flask migrate-data-for-plugin")


def test_upgrade_from_dify_0_to_1_is_refused_naming_the_plugin_migration(kube, helm):
    ns = installed(kube, helm, "v0.14.3")
    proc = helm_run(kube, helm, "upgrade", ns, scenario("v1.13.3"), check=False)
    assert proc.returncode != 0
    for text in PLUGIN_STEPS + ("upgrade.acknowledgePluginMigration=true", "Dify 0.14.3 to 1.13.3",
                                '"Plugin Migration"', "deploy/dify-api"):
        assert text in proc.stderr, f"{text!r} not in: {proc.stderr}"
    # Acknowledged: accepted, and the backup runs first.
    helm_run(kube, helm, "upgrade", ns, merge(scenario("v1.13.3"), ACK))
    hooks = [o for o in yaml.safe_load_all(run(kube, helm_binary(helm), "get", "hooks", "dify", "-n", ns).stdout) if o]
    env = {e["name"]: e.get("value") for e in get(hooks, "Job", "backup")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BACKUP_LABEL"] == "0.14.3-to-1.13.3"


def test_a_release_of_an_older_chart_is_guarded_by_its_version_label(kube, helm):
    """Before the version ConfigMap existed, every object carried app.kubernetes.io/version: the guard reads it."""
    ns = installed(kube, helm, "v0.14.3")
    kubectl(kube, "delete", "configmap", "dify-version", "-n", ns)
    proc = helm_run(kube, helm, "upgrade", ns, scenario("v1.13.3"), check=False)
    assert proc.returncode != 0 and "upgrade.acknowledgePluginMigration" in proc.stderr, proc.stderr
    objects = render_upgrade(kube, helm, ns, merge(scenario("v1.13.3"), ACK))
    env = {e["name"]: e.get("value") for e in get(objects, "Job", "backup")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["BACKUP_LABEL"] == "0.14.3-to-1.13.3"


@pytest.mark.parametrize("old, new", [("v1.13.3", "1.14.2"), ("v0.14.3", "0.15.3")])
def test_upgrades_within_a_major_are_not_refused(kube, helm, old, new):
    ns = installed(kube, helm, old)
    helm_run(kube, helm, "upgrade", ns, with_tag(old, new))


def test_a_fresh_install_of_1_x_is_not_refused(kube, helm):
    ns = namespace(kube, "restricted")
    helm_run(kube, helm, "install", ns, scenario("v1.13.3"))


# The rendered dump script against a real PostgreSQL.

@pytest.fixture(scope="module")
def rendered_backup(kube):
    """The backup Job's script and plain env, as rendered (Helm 4) for an upgrade 1.13.3 -> 1.14.2 of a release."""
    ns = installed(kube, "helm")
    job = get(render_upgrade(kube, "helm", ns, with_tag("v1.13.3", "1.14.2", {"backup": {"keep": 2}})), "Job", "backup")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"][:2] == ["sh", "-c"]
    return container["command"][2], {e["name"]: e["value"] for e in container["env"] if "value" in e}


def run_backup(rendered, postgres, backup_dir, **override):
    """The rendered script under /bin/sh with the rendered env, pointed at the test's server and directory."""
    script, env = rendered
    env = postgres.env(**{**env, "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "BACKUP_DIR": str(backup_dir),
                          **override})
    return subprocess.run(["/bin/sh", "-c", script], env=env, capture_output=True, text=True, timeout=120)


def dumps(backup_dir):
    return sorted(p.name for p in Path(backup_dir).iterdir())


def test_rendered_backup_dumps_and_restores_both_databases(rendered_backup, databases, tmp_path):
    pg = databases
    backup_dir = tmp_path / "backup"
    backup_dir.mkdir()
    proc = run_backup(rendered_backup, pg, backup_dir)
    assert proc.returncode == 0, proc.stderr
    [name] = dumps(backup_dir)
    assert name.endswith("-1.13.3-to-1.14.2"), name
    assert sorted(p.name for p in (backup_dir / name).iterdir()) == ["dify.dump", "dify_plugin.dump"]
    assert pg.password not in proc.stdout + proc.stderr
    # The data changes (a migration gone wrong), then the dump restores it.
    pg.psql("dify", "DELETE FROM apps WHERE id > 10; UPDATE apps SET name = 'changed'; CREATE TABLE new_thing (x int)")
    pg.psql("dify_plugin", "DROP TABLE plugins")
    for db in ("dify", "dify_plugin"):
        run(pg.env(), str(PG_BIN / "pg_restore"), "--clean", "--if-exists", "--exit-on-error", "-d", db,
            str(backup_dir / name / f"{db}.dump"))
    assert pg.psql("dify", "SELECT count(*), count(*) FILTER (WHERE name = 'app ' || id) FROM apps").stdout.strip() == "500|500"
    assert pg.psql("dify_plugin", "SELECT id FROM plugins").stdout.strip() == "openai"


def test_absent_plugin_database_is_skipped_as_before_dify_1(rendered_backup, databases, tmp_path):
    databases.psql("postgres", "DROP DATABASE dify_plugin")
    proc = run_backup(rendered_backup, databases, tmp_path)
    assert proc.returncode == 0, proc.stderr
    [name] = dumps(tmp_path)
    assert [p.name for p in (tmp_path / name).iterdir()] == ["dify.dump"]
    assert "dify_plugin does not exist, skipped" in proc.stdout


def test_keeps_the_newest_complete_dumps_and_drops_half_written_ones(rendered_backup, databases, tmp_path):
    # Older complete dumps, a half-written one a killed run left, and what else lives on a volume.
    for name in ("20240101T000000Z-1.11.0-to-1.12.0", "20250101T000000Z-1.12.0-to-1.13.3",
                 "20230101T000000Z-1.10.0-to-1.11.0", "20260101T000000Z-1.13.3-to-1.14.2.partial", "lost+found"):
        (tmp_path / name).mkdir()
    proc = run_backup(rendered_backup, databases, tmp_path)  # rendered with backup.keep=2
    assert proc.returncode == 0, proc.stderr
    left = dumps(tmp_path)
    assert "lost+found" in left and "20250101T000000Z-1.12.0-to-1.13.3" in left
    assert not [n for n in left if n.endswith(".partial")]
    assert "20240101T000000Z-1.11.0-to-1.12.0" not in left and "20230101T000000Z-1.10.0-to-1.11.0" not in left
    assert len(left) == 3, left  # lost+found, the older dump kept and this one


@pytest.mark.parametrize("failure", ["wrong password", "unreachable server", "second database refused"])
def test_a_failed_dump_exits_non_zero_and_keeps_nothing(rendered_backup, databases, tmp_path, failure):
    pg = databases
    older = tmp_path / "20250101T000000Z-1.12.0-to-1.13.3"
    older.mkdir()
    (older / "dify.dump").write_text("an older dump")
    override = {}
    if failure == "wrong password":
        override = {"PGPASSWORD": secrets.token_urlsafe(16)}
    elif failure == "unreachable server":
        override = {"PGPORT": str(free_port())}
    else:
        # dify dumps, then the plugin database refuses the connection: dify.dump was written, and must not stay.
        pg.psql("postgres", "DROP ROLE IF EXISTS dumper")
        pg.psql("postgres", "CREATE ROLE dumper LOGIN; REVOKE CONNECT ON DATABASE dify_plugin FROM PUBLIC")
        pg.psql("dify", "GRANT SELECT ON apps TO dumper")
        pg.psql("postgres", f"ALTER ROLE dumper PASSWORD '{pg.password}'")
        override = {"PGUSER": "dumper"}
    proc = run_backup(rendered_backup, pg, tmp_path, **override)
    assert proc.returncode != 0, proc.stdout
    assert "backup: FAILED" in proc.stderr, proc.stderr
    assert pg.password not in proc.stdout + proc.stderr
    if failure == "second database refused":
        assert "backup: dify:" in proc.stdout, "the first database was dumped before the failure"
    # Nothing new, nothing half-written, nothing pruned.
    assert dumps(tmp_path) == [older.name]
    assert (older / "dify.dump").read_text() == "an older dump"
