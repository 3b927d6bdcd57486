"""`coffer migrate`: a data directory of the directory engine imported into the SQL engine reads back whole.

Objects of every mode and shape, an upload in progress, a bucket policy and bucket encryption are written through
the directory engine; after `coffer migrate` the server on `--metadata sqlite` serves the same bytes, ETags and
listings, completes the upload, and keeps the settings. Each engine refuses the other's directory, naming what to
run.

With `--data-engine s3` the data files are uploaded to a data bucket (SeaweedFS), which then holds exactly the
imported files — only ciphertext for encrypted objects — and a server on that bucket reads every object whole and by
range; an import stopped partway finishes when run again, leaving no file twice. With `--cluster-key-file` into
PostgreSQL, the records are signed with the cluster key: two nodes started with it both read everything.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path

import pytest

from harness import SeaweedFs, clean_environment, coffer_binary, unique_name
from sse_helpers import DEFAULT_KMS_KEY, MiB, Sse, multipart_put, random_bytes
from test_data_s3 import PREFIX, bucket_keys, canary_body, new_data_bucket, s3_data_env

DIRECTORY = {"COFFER_METADATA": "directory"}
SQLITE = {"COFFER_METADATA": "sqlite"}
MODES = {"none": Sse.none(), "sse-s3": Sse.s3(), "sse-kms": Sse.kms(DEFAULT_KMS_KEY), "sse-c": Sse.c()}


def migrate(data_dir, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(coffer_binary()), "migrate", "--data", str(data_dir), *args],
                          env={**clean_environment(), **(env or {})}, capture_output=True, text=True, timeout=300)


def data_bucket_args(cluster: SeaweedFs, data_bucket: str) -> list[str]:
    return ["--data-engine", "s3", "--data-s3-endpoint", cluster.endpoint, "--data-s3-bucket", data_bucket,
            "--data-s3-prefix", PREFIX]


def write_every_mode(s3, bucket: str) -> dict[str, tuple[bytes, Sse, bytes]]:
    """Objects of every SSE mode, single-part and multipart, by key: (body, SSE, plaintext marker)."""
    objects = {}
    for n, (mode, sse) in enumerate(MODES.items()):
        for kind, size in (("single", MiB + 7), ("multipart", 6 * MiB + 5)):
            key = f"{mode}/{kind}"
            marker, body = canary_body(size, seed=10 * n + len(kind))
            if kind == "single":
                s3.put_object(Bucket=bucket, Key=key, Body=body, **sse.write_args())
            else:
                multipart_put(s3, bucket, key, body, sse, 5 * MiB)
            objects[key] = (body, sse, marker)
    return objects


def stopped_directory_store_of_every_mode(coffer_factory, name: str) -> tuple[Path, str, dict]:
    """A directory-engine server's data directory holding one bucket of `write_every_mode`'s objects, the server
    stopped (as an import needs): (data directory, bucket, objects)."""
    server = coffer_factory(env=DIRECTORY)
    bucket = unique_name(name)
    server.s3.create_bucket(Bucket=bucket)
    objects = write_every_mode(server.s3, bucket)
    server.stop_and_check()
    return server.data_dir, bucket, objects


def read_back(s3, bucket: str, objects: dict[str, tuple[bytes, Sse, bytes]]) -> None:
    for key, (body, sse, _) in objects.items():
        assert s3.get_object(Bucket=bucket, Key=key, **sse.read_args())["Body"].read() == body, key
        middle, end = len(body) // 2, len(body) - 1
        for first, last in ((0, 0), (1000, 200_000), (middle - 70_000, middle + 70_000), (end - 777, end)):
            got = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={first}-{last}", **sse.read_args())
            assert got["Body"].read() == body[first:last + 1], (key, first, last)


def imported_data_files(data_dir: Path) -> set[str]:
    """The names of the data files the directory form (moved aside by the import) holds."""
    [moved] = (data_dir / ".coffer").glob("imported-*")
    return {path.name for path in (moved / "buckets").rglob("data-*")}


def data_bucket_files(cluster: SeaweedFs, data_bucket: str) -> list[str]:
    keys = bucket_keys(cluster, data_bucket)
    assert all(key.startswith(PREFIX) for key in keys), keys
    return [key.removeprefix(PREFIX) for key in keys]


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


@pytest.mark.seaweedfs
def test_an_import_into_a_data_bucket_reads_back_whole_and_stores_only_ciphertext(coffer_factory, seaweedfs):
    data_dir, bucket, objects = stopped_directory_store_of_every_mode(coffer_factory, "migrate-s3")

    data_bucket = new_data_bucket(seaweedfs)
    done = migrate(data_dir, *data_bucket_args(seaweedfs, data_bucket), env=s3_data_env(seaweedfs))
    assert done.returncode == 0, done.stderr
    assert "done: 1 buckets, 8 objects, 0 uploads" in done.stdout, done.stdout
    assert f"--metadata sqlite --data-engine s3 --data-s3-endpoint {seaweedfs.endpoint} --data-s3-bucket " \
           f"{data_bucket} --data-s3-prefix {PREFIX}" in done.stdout, done.stdout
    assert seaweedfs.credentials.secret_key not in done.stdout + done.stderr
    # Every data file is in the bucket under its name, once; nothing else is.
    files = data_bucket_files(seaweedfs, data_bucket)
    assert sorted(files) == sorted(imported_data_files(data_dir)) and files, files
    client = seaweedfs.s3_client()
    stored = b"".join(client.get_object(Bucket=data_bucket, Key=PREFIX + name)["Body"].read() for name in files)
    for key, (_, _, marker) in objects.items():
        assert (marker in stored) == key.startswith("none/"), key

    second = coffer_factory(args=["--metadata", "sqlite", *data_bucket_args(seaweedfs, data_bucket)],
                            env=s3_data_env(seaweedfs), data_dir=data_dir)
    read_back(second.s3, bucket, objects)
    assert sorted(o["Key"] for o in second.s3.list_objects_v2(Bucket=bucket)["Contents"]) == sorted(objects)
    second.stop_and_check()


@pytest.mark.seaweedfs
def test_an_import_stopped_partway_finishes_when_run_again_with_no_file_twice(coffer_factory, seaweedfs):
    first = coffer_factory(env=DIRECTORY)
    early, late = unique_name("mig-a"), unique_name("mig-b")  # imported in this order
    objects = {}
    for n, bucket in enumerate((early, late)):
        first.s3.create_bucket(Bucket=bucket)
        for index, key in enumerate(("one", "two")):
            body = random_bytes(700_000, seed=10 * n + index)
            etag = first.s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
            objects[bucket, key] = (body, etag)
    data_dir = first.data_dir
    first.stop_and_check()

    # A record of the later bucket fails its check: the import stops there, after the early bucket went in.
    late_etag = objects[late, "two"][1]
    [record] = [path for path in (data_dir / "buckets" / late).rglob("meta.json") if late_etag in path.read_text()]
    original = record.read_bytes()
    record.write_bytes(original.replace(late_etag.encode(), b"0" * len(late_etag)))
    data_bucket = new_data_bucket(seaweedfs)
    args, env = data_bucket_args(seaweedfs, data_bucket), s3_data_env(seaweedfs)
    stopped = migrate(data_dir, *args, env=env)
    assert stopped.returncode != 0 and f"imported bucket {early}" in stopped.stdout, stopped
    assert late in stopped.stderr and f"imported bucket {late}" not in stopped.stdout, stopped
    assert data_bucket_files(seaweedfs, data_bucket), "the early bucket's files were uploaded"

    record.write_bytes(original)
    done = migrate(data_dir, *args, env=env)
    assert done.returncode == 0, done.stderr
    assert "done: 2 buckets, 4 objects" in done.stdout, done.stdout
    assert sorted(data_bucket_files(seaweedfs, data_bucket)) == sorted(imported_data_files(data_dir))

    server = coffer_factory(args=["--metadata", "sqlite", *args], env=env, data_dir=data_dir)
    for (bucket, key), (body, _) in objects.items():
        assert server.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == body, (bucket, key)
    server.stop_and_check()


@pytest.mark.postgres
@pytest.mark.seaweedfs
def test_an_import_into_a_cluster_database_is_read_by_every_node_holding_the_key(coffer_factory, seaweedfs,
                                                                                 postgres, tmp_path):
    data_dir, bucket, objects = stopped_directory_store_of_every_mode(coffer_factory, "migrate-cl")

    key_file = tmp_path / "cluster.key"
    key_file.write_bytes(secrets.token_bytes(32))
    key_file.chmod(0o600)
    url = postgres.url_for(postgres.create_database())
    data_bucket = new_data_bucket(seaweedfs)
    args = ["--metadata", "postgres", "--metadata-url", url, "--cluster-key-file", str(key_file),
            *data_bucket_args(seaweedfs, data_bucket)]
    done = migrate(data_dir, *args, env=s3_data_env(seaweedfs))
    assert done.returncode == 0, done.stderr
    assert "done: 1 buckets, 8 objects" in done.stdout and f"--cluster-key-file {key_file}" in done.stdout, done
    assert url not in done.stdout + done.stderr

    # The node on the imported directory brings its KMS state to the database; the other one finds it there.
    nodes = [coffer_factory(args=args, env=s3_data_env(seaweedfs), data_dir=data_dir),
             coffer_factory(args=args, env=s3_data_env(seaweedfs))]
    for node in nodes:
        read_back(node.s3, bucket, objects)
    for node in nodes:
        node.stop_and_check()
