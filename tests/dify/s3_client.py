"""The harness's own view of its S3 store (tests/dify/s3_store.rs): boto3 with path-style addresses, as Dify's api
builds its client. The endpoint, region and keys come from the environment, never from the command line.

    s3_client.py create-bucket BUCKET   create it (the test's, before the release is installed)
    s3_client.py list BUCKET            one JSON line per object: {"key": ..., "size": ...}
    s3_client.py get BUCKET KEY         the object's bytes on stdout
"""

import json
import os
import sys

try:
    import boto3
    from botocore.config import Config
except ImportError:
    sys.exit("boto3 is missing: run `scripts/test-tools install python` and put `scripts/test-tools path` on PATH")


def main(command, bucket, *rest):
    client = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=os.environ["S3_REGION"],
                          aws_access_key_id=os.environ["S3_ACCESS_KEY"],
                          aws_secret_access_key=os.environ["S3_SECRET_KEY"],
                          config=Config(s3={"addressing_style": "path"}))
    if command == "create-bucket":
        client.create_bucket(Bucket=bucket)
    elif command == "list":
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for obj in page.get("Contents", []):
                print(json.dumps({"key": obj["Key"], "size": obj["Size"]}))
    elif command == "get":
        sys.stdout.buffer.write(client.get_object(Bucket=bucket, Key=rest[0])["Body"].read())
    else:
        sys.exit(f"unknown command {command!r}: create-bucket, list or get")


if __name__ == "__main__":
    main(*sys.argv[1:])
