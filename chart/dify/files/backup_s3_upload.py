"""Uploads the pre-upgrade backup to the S3 store, run by the backup hook Job (templates/backup-job.yaml) in S3 mode.

The Job's init container has dumped the databases into BACKUP_DIR/<UTC time>-<from>-to-<to>/ (an emptyDir) and
checked each dump reads back. This container, in Dify's api image for its boto3 (Dify's own S3 client), then:
1. checks the bucket answers a listing with these keys;
2. uploads each <db>.dump to s3://<bucket>/<prefix>/<name>/<db>.dump and checks the stored size is the local one;
3. writes <prefix>/<name>/manifest.json last (sizes and SHA-256 of the dumps): a backup is complete exactly when
   its manifest exists, so a failed or killed run never leaves one that looks complete;
4. keeps the newest BACKUP_KEEP complete backups under the prefix and deletes the older ones, and what earlier
   runs left without a manifest.

Any failure exits 1 (the Job fails and so does the upgrade), after deleting what this run had uploaded when no
complete backup came of it. The keys arrive in the environment from the files store's Secret and are only handed
to boto3: messages carry S3's error codes, and the secret key is masked out of every line printed.

Environment: BACKUP_DIR, BACKUP_KEEP, BACKUP_S3_PREFIX, S3_BUCKET_NAME, S3_ENDPOINT, S3_REGION, S3_ADDRESS_STYLE,
S3_ACCESS_KEY, S3_SECRET_KEY, and S3_KEYS_SECRET (the Secret's name, for messages).
Exit codes: 0 uploaded, checked and pruned; 1 a step failed (its line says which and what to fix).
"""

import hashlib
import json
import os
import re
import sys

import boto3
from boto3.exceptions import Boto3Error
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Names of backups: they start with their UTC time, so sorting them sorts them by age.
BACKUP_NAME = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9._-]+$")
MANIFEST = "manifest.json"
SECRET = os.environ.get("S3_SECRET_KEY", "")


def log(message):
    if SECRET:
        message = message.replace(SECRET, "***")
    print(f"backup: {message}", flush=True)


class Failed(Exception):
    """A step that cannot go on; the message names the step and what to fix."""


def env(name, default=None):
    value = os.environ.get(name, default)
    if value is None:
        raise Failed(f"{name} is not set (the chart sets it)")
    return value


def s3_error(step, err):
    """One line for a failed S3 call: the step, S3's error code and message, never a request."""
    cause = err
    while not isinstance(cause, ClientError) and cause.__context__ is not None:
        cause = cause.__context__  # boto3's transfer errors wrap S3's answer
    if isinstance(cause, ClientError):
        err = cause
        error = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{step}: S3 answered {status} {error.get('Code', '')} {error.get('Message', '')}".rstrip()
    return f"{step}: {type(err).__name__}: {err}"


def local_backup(backup_dir):
    """The one complete dump directory the init container left, and its dump files."""
    names = [n for n in os.listdir(backup_dir) if BACKUP_NAME.match(n) and os.path.isdir(os.path.join(backup_dir, n))]
    if len(names) != 1:
        raise Failed(f"expected one complete dump in {backup_dir}, found {sorted(names)}: the dump step did not finish")
    name = names[0]
    files = sorted(f for f in os.listdir(os.path.join(backup_dir, name)) if f.endswith(".dump"))
    if not files:
        raise Failed(f"{backup_dir}/{name} holds no dump")
    return name, [os.path.join(backup_dir, name, f) for f in files]


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def client():
    # As Dify's own S3 storage builds its client: endpoint, region, addressing style, keys; TLS verified against
    # the image's trust store.
    return boto3.client(
        "s3",
        endpoint_url=env("S3_ENDPOINT", "") or None,
        region_name=env("S3_REGION", "") or None,
        aws_access_key_id=env("S3_ACCESS_KEY"),
        aws_secret_access_key=env("S3_SECRET_KEY"),
        config=Config(s3={"addressing_style": env("S3_ADDRESS_STYLE", "auto") or "auto"},
                      connect_timeout=10, read_timeout=120, retries={"max_attempts": 3, "mode": "standard"}),
    )


# S3's error codes for keys the store does not accept, or that may not use the bucket (XAdminUserNotFound:
# versitygw's answer to an unknown access key).
REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "ExpiredToken",
           "XAdminUserNotFound"}


def check_bucket(s3, bucket, prefix):
    """One listing under the prefix: a GET, so a refusal carries S3's error code (a HEAD answers with a status only,
    which some stores give as 404 for unknown keys too)."""
    try:
        s3.list_objects_v2(Bucket=bucket, Prefix=prefix + "/", MaxKeys=1)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        secret = env("S3_KEYS_SECRET", "the files store's Secret")
        if code == "NoSuchBucket":
            raise Failed(f"bucket {bucket!r} does not exist: create it, or name another in backup.s3.bucket "
                         "(empty: storage.files.s3.bucket)") from None
        if code in REFUSED or err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") in (401, 403):
            raise Failed(f"the store refused the keys for bucket {bucket!r} ({code}): check the access and secret "
                         f"keys in Secret {secret} (storage.files.s3.existingSecret) and their rights on the bucket") from None
        raise Failed(s3_error(f"listing bucket {bucket!r}", err)) from None
    except BotoCoreError as err:
        raise Failed(s3_error(f"reaching the store at {env('S3_ENDPOINT', '') or 'AWS'} (storage.files.s3.endpoint)",
                              err)) from None


def list_backups(s3, bucket, prefix):
    """{backup name: [its keys]} under prefix/; keys outside the backup naming are not ours and stay."""
    backups = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):
        for obj in page.get("Contents", []):
            name, _, rest = obj["Key"][len(prefix) + 1:].partition("/")
            if BACKUP_NAME.match(name) and rest:
                backups.setdefault(name, []).append(obj["Key"])
    return backups


def delete_keys(s3, bucket, keys):
    for start in range(0, len(keys), 1000):
        answer = s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]],
                                                          "Quiet": True})
        errors = answer.get("Errors") or []
        if errors:
            raise Failed(f"deleting {errors[0].get('Key')}: S3 answered {errors[0].get('Code')} "
                         f"{errors[0].get('Message', '')} ({len(errors)} keys not deleted)")


def upload(s3, bucket, prefix, name, paths, uploaded):
    """Each dump, its stored size checked, then the manifest that makes the backup complete."""
    manifest = {"name": name, "files": {}}
    for path in paths:
        key = f"{prefix}/{name}/{os.path.basename(path)}"
        size = os.path.getsize(path)
        uploaded.append(key)
        s3.upload_file(path, bucket, key)
        stored = s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        if stored != size:
            raise Failed(f"s3://{bucket}/{key} holds {stored} bytes, the dump {size}")
        manifest["files"][os.path.basename(path)] = {"bytes": size, "sha256": sha256(path)}
        log(f"uploaded s3://{bucket}/{key} ({size} bytes, size checked)")
    body = json.dumps(manifest, indent=2, sort_keys=True).encode()
    key = f"{prefix}/{name}/{MANIFEST}"
    uploaded.append(key)
    s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
    if s3.head_object(Bucket=bucket, Key=key)["ContentLength"] != len(body):
        raise Failed(f"s3://{bucket}/{key} was not stored whole")


def prune(s3, bucket, prefix, keep, current):
    backups = list_backups(s3, bucket, prefix)
    complete = sorted((n for n, keys in backups.items() if f"{prefix}/{n}/{MANIFEST}" in keys), reverse=True)
    if current not in complete:
        raise Failed(f"s3://{bucket}/{prefix}/{current}/ is not listed as complete after its upload")
    # Without a manifest: what a failed or killed run left (never the one just made, which has its manifest).
    drop = [n for n in backups if n not in complete] + complete[keep:]
    for name in sorted(drop):
        delete_keys(s3, bucket, backups[name])
        log(f"removed {'the older backup' if name in complete else 'the incomplete upload'} "
            f"s3://{bucket}/{prefix}/{name}/")


def main():
    backup_dir = env("BACKUP_DIR")
    keep = int(env("BACKUP_KEEP"))
    bucket = env("S3_BUCKET_NAME")
    prefix = env("BACKUP_S3_PREFIX").strip("/")
    if keep < 1 or not bucket or not prefix:
        raise Failed("BACKUP_KEEP must be at least 1, S3_BUCKET_NAME and BACKUP_S3_PREFIX must be set")
    name, paths = local_backup(backup_dir)
    s3 = client()
    check_bucket(s3, bucket, prefix)
    step = "listing the backups"
    try:
        if f"{prefix}/{name}/{MANIFEST}" in list_backups(s3, bucket, prefix).get(name, []):
            raise Failed(f"s3://{bucket}/{prefix}/{name}/ exists already as a complete backup")
        uploaded = []
        step = "uploading"
        try:
            upload(s3, bucket, prefix, name, paths, uploaded)
        except BaseException:
            # No complete backup came of this run: take back what it stored (best effort; a leftover has no
            # manifest, so it never counts as a backup, and the next run removes it).
            try:
                delete_keys(s3, bucket, uploaded)
            except (Failed, ClientError, BotoCoreError):
                log("could not delete this run's partial upload; it has no manifest, and the next run removes it")
            raise
        log(f"complete: s3://{bucket}/{prefix}/{name}/ ({len(paths)} dumps and {MANIFEST})")
        step = f"keeping the newest {keep} backups (this one is complete)"
        prune(s3, bucket, prefix, keep, name)
    except (ClientError, BotoCoreError, Boto3Error) as err:
        raise Failed(s3_error(step, err)) from None


if __name__ == "__main__":
    try:
        main()
    except Failed as err:
        log(f"FAILED: {err}")
        log("the upgrade must not go on (the Job failed, so Helm stops it)")
        sys.exit(1)
    except Exception as err:  # noqa: BLE001 - anything else: one line, no traceback with the environment
        log(f"FAILED: {type(err).__name__}: {err}")
        log("the upgrade must not go on (the Job failed, so Helm stops it)")
        sys.exit(1)
