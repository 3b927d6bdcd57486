"""`coffer migrate`: a data directory of the directory engine imported into the SQL engine reads back whole.

Objects of every mode and shape, an upload in progress, a bucket policy and bucket encryption are written through
the directory engine; after `coffer migrate` the server on `--metadata sqlite` serves the same bytes, ETags and
listings, completes the upload, and keeps the settings. Each engine refuses the other's directory, naming what to
run.
"""

from __future__ import annotations

import json
import subprocess

from harness import clean_environment, coffer_binary, unique_name
from sse_helpers import DEFAULT_KMS_KEY, MiB, Sse, multipart_put, random_bytes

DIRECTORY = {"COFFER_METADATA": "directory"}
SQLITE = {"COFFER_METADATA": "sqlite"}


def migrate(data_dir) -> subprocess.CompletedProcess:
    return subprocess.run([str(coffer_binary()), "migrate", "--data", str(data_dir)], env=clean_environment(),
                          capture_output=True, text=True, timeout=300)


def test_a_directory_store_imported_into_sqlite_reads_back_whole(coffer_factory):
    first = coffer_factory(env=DIRECTORY)
    s3 = first.s3
    bucket = unique_name("migrate")
    s3.create_bucket(Bucket=bucket)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteObject",
                                                      "Resource": f"arn:aws:s3:::{bucket}/locked/*"}]}
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
    s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})
    objects = {}
    for index, (key, size, sse) in enumerate([("plain-small", 1000, Sse.none()), ("plain-file", 300_000, Sse.none()),
                                              ("s3", 200_000, Sse.s3()), ("kms", 5000, Sse.kms(DEFAULT_KMS_KEY)),
                                              ("c", 150_000, Sse.c()), ("locked/x", 10, Sse.none())]):
        body = random_bytes(size, seed=index)
        etag = s3.put_object(Bucket=bucket, Key=key, Body=body, **sse.write_args())["ETag"]
        objects[key] = (body, sse, etag)
    body = random_bytes(6 * MiB + 5, seed=99)
    multipart_put(s3, bucket, "mpu", body, Sse.kms(DEFAULT_KMS_KEY), 5 * MiB)
    objects["mpu"] = (body, Sse.kms(DEFAULT_KMS_KEY), s3.head_object(Bucket=bucket, Key="mpu")["ETag"])
    upload = s3.create_multipart_upload(Bucket=bucket, Key="pending")["UploadId"]
    part = random_bytes(1000, seed=7)
    part_etag = s3.upload_part(Bucket=bucket, Key="pending", UploadId=upload, PartNumber=1, Body=part)["ETag"]
    data_dir = first.data_dir
    first.stop_and_check()

    done = migrate(data_dir)
    assert done.returncode == 0, done.stderr
    assert "done: 1 buckets, 7 objects, 1 uploads" in done.stdout, done.stdout
    again = migrate(data_dir)
    assert again.returncode != 0 and "nothing to import" in again.stderr, again

    second = coffer_factory(env=SQLITE, data_dir=data_dir)
    s3 = second.s3
    for key, (body, sse, etag) in objects.items():
        got = s3.get_object(Bucket=bucket, Key=key, **sse.read_args())
        assert (got["Body"].read(), got["ETag"]) == (body, etag), key
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(objects), listed
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == policy
    assert s3.put_object(Bucket=bucket, Key="new", Body=b"x")["ServerSideEncryption"] == "AES256"
    assert [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"]] == [upload]
    s3.complete_multipart_upload(Bucket=bucket, Key="pending", UploadId=upload,
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part_etag}]})
    assert s3.get_object(Bucket=bucket, Key="pending")["Body"].read() == part
    second.stop_and_check()

    # The directory engine refuses what is now the SQL engine's directory (it would look empty to it).
    refused = subprocess.run([str(coffer_binary()), "server", "--data", str(data_dir), "--address", "127.0.0.1:0"],
                             env={**clean_environment(), **DIRECTORY}, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "--metadata sqlite" in refused.stderr, refused


def test_the_sql_engine_names_the_import_for_a_directory_store(coffer_factory):
    first = coffer_factory(env=DIRECTORY)
    first.s3.create_bucket(Bucket=unique_name("old"))
    data_dir = first.data_dir
    first.stop_and_check()
    refused = subprocess.run([str(coffer_binary()), "server", "--data", str(data_dir), "--address", "127.0.0.1:0"],
                             env={**clean_environment(), **SQLITE}, capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "coffer migrate --data" in refused.stderr, refused
