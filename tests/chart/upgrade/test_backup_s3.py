"""Upgrade > the pre-upgrade backup to the S3 store (backup.target, empty following storage.files.type s3).

The Job renders against an installed release on the local kube-apiserver (lookup answers); its two steps then run
for real as rendered: the init container's dump script under /bin/sh against Debian's PostgreSQL 15, and the upload
container's Python under the test venv's boto3, the version Dify's api image carries (pinned in scripts/test-tools),
against versitygw, an S3 server checking SigV4 signatures. Both servers run on loopback, started and stopped by the
test.
"""

import json
import os
import subprocess
import sys

import pytest

from backup_stores import PG_BIN, databases, postgres, s3_store  # noqa: F401 - fixtures
from cluster import as_pod, dry_run_pod, installed, render_upgrade, with_tag
from conftest import CHART, free_port, get, merge, render_error, run, scenario

pytestmark = pytest.mark.install

BUCKET = "dify-files"
LABEL = "1.13.3-to-1.14.2"
DATABASES = ["dify.dump", "dify_plugin.dump"]


def env_of(container):
    return {e["name"]: e for e in container["env"]}


def backup_job(objects):
    return get(objects, "Job", "backup")


# Rendering.

def test_s3_files_send_the_backup_to_the_store_without_a_volume(kube, helm):
    ns = installed(kube, helm, "s3-storage")
    objects = render_upgrade(kube, helm, ns, with_tag("s3-storage", "1.14.2"))
    assert [o["kind"] for o in objects if o["metadata"]["name"] == "dify-backup"] == ["Job"], "no backup volume"
    job = backup_job(objects)
    assert job["spec"]["backoffLimit"] == 0
    spec = job["spec"]["template"]["spec"]
    [dump] = spec["initContainers"]
    [upload] = spec["containers"]
    assert dump["image"] == "postgres:15.14-alpine" and dump["command"][:2] == ["sh", "-c"]
    assert env_of(dump)["BACKUP_DIR"]["value"] == "/backup" and env_of(dump)["BACKUP_LABEL"]["value"] == LABEL
    assert upload["image"] == "langgenius/dify-api:1.14.2", "the api image, for Dify's own boto3"
    assert upload["command"][:2] == ["python", "-c"]
    assert upload["command"][2] == (CHART / "files" / "backup_s3_upload.py").read_text()
    env = env_of(upload)
    s3 = scenario("s3-storage")["storage"]["files"]["s3"]
    assert {k: env[k]["value"] for k in ("S3_ENDPOINT", "S3_BUCKET_NAME", "S3_REGION", "S3_ADDRESS_STYLE")} == {
        "S3_ENDPOINT": s3["endpoint"], "S3_BUCKET_NAME": s3["bucket"], "S3_REGION": s3["region"],
        "S3_ADDRESS_STYLE": s3["addressStyle"]}
    assert env["BACKUP_S3_PREFIX"]["value"] == f"dify-backups/{ns}/dify", "one prefix per release"
    assert env["BACKUP_KEEP"]["value"] == "3"
    for name, key in (("S3_ACCESS_KEY", "access-key"), ("S3_SECRET_KEY", "secret-key")):
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": s3["existingSecret"], "key": key}}}
    assert spec["volumes"] == [{"name": "backup", "emptyDir": {"sizeLimit": "20Gi"}}]
    assert upload["volumeMounts"] == [{"name": "backup", "mountPath": "/backup", "readOnly": True}]
    assert dry_run_pod(kube, as_pod(job, ns)).returncode == 0, "the backup pod meets Pod Security restricted"


def test_backup_target_pvc_keeps_the_volume_with_s3_files(kube, helm):
    ns = installed(kube, helm, "s3-storage")
    objects = render_upgrade(kube, helm, ns, with_tag("s3-storage", "1.14.2", {"backup": {"target": "pvc"}}))
    get(objects, "PersistentVolumeClaim", "backup")
    spec = backup_job(objects)["spec"]["template"]["spec"]
    assert "initContainers" not in spec and [c["name"] for c in spec["containers"]] == ["backup"]


def test_backup_bucket_and_prefix_from_values(kube, helm):
    ns = installed(kube, helm, "s3-storage")
    values = with_tag("s3-storage", "1.14.2", {"backup": {"keep": 5, "size": "8Gi",
                                                          "s3": {"bucket": "backups", "prefix": "/nkp/dify/"}}})
    spec = backup_job(render_upgrade(kube, helm, ns, values))["spec"]["template"]["spec"]
    env = env_of(spec["containers"][0])
    assert (env["S3_BUCKET_NAME"]["value"], env["BACKUP_S3_PREFIX"]["value"], env["BACKUP_KEEP"]["value"]) == (
        "backups", "nkp/dify", "5")
    assert spec["volumes"][0]["emptyDir"] == {"sizeLimit": "8Gi"}


def test_backup_target_s3_needs_s3_files(helm):
    error = render_error(merge(scenario("v1.13.3"), {"backup": {"target": "s3"}}), helm=helm)
    assert "backup.target=s3" in error and "storage.files.type=s3" in error, error


# The rendered dump and upload against PostgreSQL and versitygw.

@pytest.fixture(scope="module")
def rendered_s3_backup(kube, s3_store):
    """The Job's two containers (command and plain env), rendered (Helm 4) for an upgrade 1.13.3 -> 1.14.2 of a
    release whose files live on the test's store, keeping 2 backups."""
    ns = installed(kube, "helm", "s3-storage")
    values = with_tag("s3-storage", "1.14.2", {"backup": {"keep": 2}, "storage": {"files": {"s3": {
        "endpoint": s3_store.endpoint, "bucket": BUCKET}}}})
    spec = backup_job(render_upgrade(kube, "helm", ns, values))["spec"]["template"]["spec"]
    [dump], [upload] = spec["initContainers"], spec["containers"]
    plain = {c["name"]: {e["name"]: e["value"] for e in c["env"] if "value" in e} for c in (dump, upload)}
    return {"dump": (dump["command"], plain["dump"]), "upload": (upload["command"], plain["upload"]),
            "prefix": plain["upload"]["BACKUP_S3_PREFIX"]}


@pytest.fixture
def bucket(s3_store):
    """The files bucket, empty."""
    if BUCKET not in [b["Name"] for b in s3_store.client.list_buckets()["Buckets"]]:
        s3_store.client.create_bucket(Bucket=BUCKET)
    s3_store.empty(BUCKET)
    return BUCKET


def run_s3_backup(rendered, postgres, s3_store, scratch, **override):
    """The Job's pod: the dump as rendered into the scratch directory (the emptyDir), then, when it succeeded, the
    upload as rendered with the keys the Secret would give it. Returns the processes that ran."""
    command, env = rendered["dump"]
    env = postgres.env(**{**env, "PGHOST": "127.0.0.1", "PGPORT": str(postgres.port), "BACKUP_DIR": str(scratch)})
    dump = subprocess.run(["/bin/sh", *command[1:]], env=env, capture_output=True, text=True, timeout=120)
    if dump.returncode != 0:
        return [dump]
    command, env = rendered["upload"]
    # Nothing of the test's own environment but PATH: no AWS_* variable or ~/.aws file reaches boto3.
    env = {**env, "PATH": os.environ["PATH"], "HOME": str(scratch), "BACKUP_DIR": str(scratch),
           "S3_ACCESS_KEY": s3_store.access_key, "S3_SECRET_KEY": s3_store.secret_key, **override}
    upload = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=300)
    return [dump, upload]


def output(procs):
    return "".join(p.stdout + p.stderr for p in procs)


def backups(s3_store, prefix):
    """{backup name: [file names]} under the prefix."""
    found = {}
    for key in s3_store.keys(BUCKET, prefix + "/"):
        name, _, file = key[len(prefix) + 1:].partition("/")
        found.setdefault(name, []).append(file)
    return found


def put_backup(s3_store, prefix, name, complete=True):
    for file in DATABASES + (["manifest.json"] if complete else []):
        s3_store.client.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}/{file}", Body=b"an older dump")


def test_rendered_backup_uploads_to_s3_and_restores(rendered_s3_backup, databases, s3_store, bucket, tmp_path):
    pg, prefix = databases, rendered_s3_backup["prefix"]
    # Past boto3's 8 MiB threshold even compressed, so the dump goes up in parts, as real ones do.
    pg.psql("dify", "CREATE TABLE upload_files (id int PRIMARY KEY, hash text); "
                    "INSERT INTO upload_files SELECT i, md5(random()::text) FROM generate_series(1, 800000) AS i")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    procs = run_s3_backup(rendered_s3_backup, pg, s3_store, scratch)
    assert [p.returncode for p in procs] == [0, 0], output(procs)
    [(name, files)] = backups(s3_store, prefix).items()
    assert name.endswith(f"-{LABEL}") and sorted(files) == DATABASES + ["manifest.json"], (name, files)
    assert f"complete: s3://{BUCKET}/{prefix}/{name}/" in procs[1].stdout
    assert "-" in s3_store.client.head_object(Bucket=BUCKET, Key=f"{prefix}/{name}/dify.dump")["ETag"], "multipart"
    for secret in (s3_store.secret_key, pg.password):
        assert secret not in output(procs)
    # The data changes (a migration gone wrong); what comes back from the store restores it.
    pg.psql("dify", "DELETE FROM apps WHERE id > 10; UPDATE apps SET name = 'changed'; CREATE TABLE new_thing (x int)")
    pg.psql("dify_plugin", "DROP TABLE plugins")
    pg.psql("dify", "TRUNCATE upload_files")
    restore = tmp_path / "restore"
    restore.mkdir()
    manifest = json.loads(s3_store.client.get_object(Bucket=BUCKET, Key=f"{prefix}/{name}/manifest.json")["Body"].read())
    for db in ("dify", "dify_plugin"):
        path = restore / f"{db}.dump"
        s3_store.client.download_file(BUCKET, f"{prefix}/{name}/{db}.dump", str(path))
        assert manifest["files"][f"{db}.dump"]["bytes"] == path.stat().st_size
        sha = run(os.environ, "sha256sum", str(path)).stdout.split()[0]
        assert manifest["files"][f"{db}.dump"]["sha256"] == sha
        run(pg.env(), str(PG_BIN / "pg_restore"), "--clean", "--if-exists", "--exit-on-error", "-d", db, str(path))
    assert pg.psql("dify", "SELECT count(*), count(*) FILTER (WHERE name = 'app ' || id) FROM apps").stdout.strip() == "500|500"
    assert pg.psql("dify_plugin", "SELECT id FROM plugins").stdout.strip() == "openai"
    assert pg.psql("dify", "SELECT count(*) FROM upload_files").stdout.strip() == "800000"


def test_keeps_the_newest_complete_backups_in_s3(rendered_s3_backup, databases, s3_store, bucket, tmp_path):
    prefix = rendered_s3_backup["prefix"]
    for name in ("20230101T000000Z-1.10.0-to-1.11.0", "20240101T000000Z-1.11.0-to-1.12.0",
                 "20250101T000000Z-1.12.0-to-1.13.3"):
        put_backup(s3_store, prefix, name)
    # What a killed upload left (no manifest), a key of someone else under the prefix, and another release's backup.
    put_backup(s3_store, prefix, "20260101T000000Z-1.13.3-to-1.14.2", complete=False)
    s3_store.client.put_object(Bucket=BUCKET, Key=f"{prefix}/README.txt", Body=b"not a backup")
    put_backup(s3_store, "dify-backups/other/dify", "20200101T000000Z-1.0.0-to-1.1.0")
    procs = run_s3_backup(rendered_s3_backup, databases, s3_store, tmp_path)  # rendered with backup.keep=2
    assert [p.returncode for p in procs] == [0, 0], output(procs)
    [new] = [n for n in backups(s3_store, prefix) if n.endswith(f"-{LABEL}") and not n.startswith("20260101")]
    assert sorted(backups(s3_store, prefix)) == sorted(["20250101T000000Z-1.12.0-to-1.13.3", new, "README.txt"])
    assert "removed the older backup" in procs[1].stdout and "removed the incomplete upload" in procs[1].stdout
    assert s3_store.keys(BUCKET, "dify-backups/other/") != [], "another release's backups are not touched"


@pytest.mark.parametrize("failure", ["wrong secret key", "wrong access key", "missing bucket", "unreachable store"])
def test_a_refused_upload_exits_non_zero_and_keeps_no_new_backup(rendered_s3_backup, databases, s3_store, bucket,
                                                                 tmp_path, failure):
    prefix = rendered_s3_backup["prefix"]
    older = "20250101T000000Z-1.12.0-to-1.13.3"
    put_backup(s3_store, prefix, older)
    before = s3_store.keys(BUCKET)
    wrong_secret = s3_store.secret_key[::-1]
    override = {
        "wrong secret key": {"S3_SECRET_KEY": wrong_secret},
        "wrong access key": {"S3_ACCESS_KEY": "nobody"},
        "missing bucket": {"S3_BUCKET_NAME": "no-such-bucket"},
        "unreachable store": {"S3_ENDPOINT": f"http://127.0.0.1:{free_port()}"},
    }[failure]
    procs = run_s3_backup(rendered_s3_backup, databases, s3_store, tmp_path, **override)
    assert procs[0].returncode == 0, output(procs)
    assert procs[1].returncode != 0, output(procs)
    assert "backup: FAILED" in procs[1].stdout and "the upgrade must not go on" in procs[1].stdout, output(procs)
    expected = {"missing bucket": "bucket 'no-such-bucket' does not exist",
                "unreachable store": "storage.files.s3.endpoint"}.get(failure, "storage.files.s3.existingSecret")
    assert expected in procs[1].stdout, output(procs)
    for secret in (s3_store.secret_key, wrong_secret, databases.password):
        assert secret not in output(procs)
    assert s3_store.keys(BUCKET) == before, "nothing new, nothing pruned"


def test_a_failed_upload_takes_back_what_it_stored(rendered_s3_backup, databases, s3_store, bucket, tmp_path):
    """The store refuses the second dump (a key below its own is in the way): the first dump was uploaded and must
    not stay; no manifest is written, so nothing looks like a complete backup."""
    prefix = rendered_s3_backup["prefix"]
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    command, env = rendered_s3_backup["dump"]
    dump = subprocess.run(["/bin/sh", *command[1:]], env=databases.env(**{
        **env, "PGHOST": "127.0.0.1", "PGPORT": str(databases.port), "BACKUP_DIR": str(scratch)}),
        capture_output=True, text=True, timeout=120)
    assert dump.returncode == 0, dump.stderr
    [name] = [p.name for p in scratch.iterdir()]
    # A key below the second dump's: on the posix backend that is a directory, so the dump's own key cannot be a file.
    s3_store.client.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}/dify_plugin.dump/x", Body=b"in the way")
    before = s3_store.keys(BUCKET)
    command, env = rendered_s3_backup["upload"]
    upload = subprocess.run([sys.executable, *command[1:]], env={
        **env, "PATH": os.environ["PATH"], "HOME": str(scratch), "BACKUP_DIR": str(scratch),
        "S3_ACCESS_KEY": s3_store.access_key, "S3_SECRET_KEY": s3_store.secret_key},
        capture_output=True, text=True, timeout=300)
    assert upload.returncode != 0, upload.stdout + upload.stderr
    assert f"{name}/dify.dump (" in upload.stdout and "FAILED: uploading:" in upload.stdout, upload.stdout
    assert s3_store.keys(BUCKET) == before, "the uploaded dify.dump was taken back; no manifest"
