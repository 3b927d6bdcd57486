"""Stateless nodes: three `coffer server` processes on loopback over one PostgreSQL database and one SeaweedFS bucket.

Each node has its own data directory (temp files only) and the same cluster key file (`--cluster-key-file`), KMS
master key file and data bucket (`--data-engine s3`). The KMS state (configuration, lifecycle state, the local store's
sealed keys) lives in the database, and a change made on one node is in force on the others within the documented
bound (docs/operations.md, "Clusters": about 2 s): the tests poll for it, they never sleep and assert. Objects
written through one node are read, listed, copied and deleted through the others.
"""

from __future__ import annotations

import secrets
import subprocess
import threading
import time
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from harness import CofferServer, free_port, log_tail, unique_name
from sse_helpers import Sse, kms_admin, kms_admin_ok, vault_store

pytestmark = pytest.mark.postgres

BODY = b"cluster body " * 100
# Far above the documented bound: a change that has not arrived by then never will.
PATIENCE = 30.0


def transit_key(bao) -> str:
    name = unique_name("cl-transit")
    bao.bao("write", "-f", f"transit/keys/{name}")
    return name


def eventually(check, what: str):
    """Polls `check` until it returns a true value (and returns it); fails naming `what` after PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached on time: {what}")
        time.sleep(0.1)


def private_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o600)
    return path


class Cluster:
    def __init__(self, postgres, seaweedfs, coffer_factory, directory: Path):
        self.postgres = postgres
        self.seaweedfs = seaweedfs
        self.factory = coffer_factory
        self.database = postgres.create_database()
        self.url = postgres.url_for(self.database)
        self.data_bucket = unique_name("cl-data")
        seaweedfs.s3_client().create_bucket(Bucket=self.data_bucket)
        self.cluster_key = secrets.token_bytes(32)
        self.key_file = private_file(directory / "cluster.key", self.cluster_key)
        self.master_key_file = private_file(directory / "kms-master.key", secrets.token_hex(32).encode() + b"\n")
        self.nodes = [self.start() for _ in range(3)]

    def args(self, key_file: Path | None = None) -> list[str]:
        return ["--metadata", "postgres", "--metadata-url", self.url, "--cluster-key-file",
                str(key_file or self.key_file), "--kms-master-key-file", str(self.master_key_file),
                "--data-engine", "s3", "--data-s3-endpoint", self.seaweedfs.endpoint,
                "--data-s3-bucket", self.data_bucket]

    def env(self) -> dict[str, str]:
        return {"COFFER_DATA_S3_ACCESS_KEY_ID": self.seaweedfs.credentials.access_key,
                "COFFER_DATA_S3_SECRET_ACCESS_KEY": self.seaweedfs.credentials.secret_key}

    def start(self, data_dir: Path | None = None) -> CofferServer:
        return self.factory(args=self.args(), env=self.env(), data_dir=data_dir)

    def sql(self, query: str) -> str:
        return self.postgres.psql(query, database=self.database).stdout


@pytest.fixture
def cluster(postgres, seaweedfs, coffer_factory, tmp_path) -> Cluster:
    return Cluster(postgres, seaweedfs, coffer_factory, tmp_path)


def status(node: CofferServer) -> dict:
    return kms_admin_ok(node, "GET", "/status")


def sse_put(node: CofferServer, bucket: str, key: str, key_id: str | None = None):
    extra = {"SSEKMSKeyId": key_id} if key_id else {}
    return node.s3.put_object(Bucket=bucket, Key=key, Body=BODY, ServerSideEncryption="aws:kms", **extra)


def refused(call) -> str | None:
    """The S3 error code `call` fails with, or None if it succeeds."""
    try:
        result = call()
        if isinstance(result, dict) and "Body" in result:
            result["Body"].read()
        return None
    except ClientError as error:
        return error.response["Error"]["Code"]


MODES = {"none": Sse.none(), "sse-s3": Sse.s3(), "sse-kms": Sse.kms(), "sse-c": Sse.c()}
PART = 5 << 20


def multipart_put(node: CofferServer, bucket: str, key: str, sse: Sse, body: bytes) -> None:
    s3 = node.s3
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **sse.write_args())["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(body), PART), start=1):
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number,
                              Body=body[start:start + PART], **sse.read_args())["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts})


@pytest.mark.parametrize("mode", MODES)
def test_objects_written_through_one_node_are_read_listed_copied_and_deleted_through_the_others(cluster, mode):
    a, b, c = cluster.nodes
    sse = MODES[mode]
    bucket = unique_name("cl-obj")
    a.s3.create_bucket(Bucket=bucket)
    small, large = secrets.token_bytes(3000), secrets.token_bytes(PART + 1_234_567)
    a.s3.put_object(Bucket=bucket, Key="small", Body=small, **sse.write_args())
    multipart_put(a, bucket, "large", sse, large)

    # Read (whole and ranged) and listed through B and C.
    for node in (b, c):
        assert node.s3.get_object(Bucket=bucket, Key="small", **sse.read_args())["Body"].read() == small
        ranged = node.s3.get_object(Bucket=bucket, Key="large", Range=f"bytes={PART - 100}-{PART + 99}",
                                    **sse.read_args())
        assert ranged["Body"].read() == large[PART - 100:PART + 100]
        assert node.s3.get_object(Bucket=bucket, Key="large", **sse.read_args())["Body"].read() == large
        listed = node.s3.list_objects_v2(Bucket=bucket)["Contents"]
        assert {entry["Key"]: entry["Size"] for entry in listed} == {"small": len(small), "large": len(large)}

    # Copied through B (same encryption), read through C.
    b.s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "large"},
                     **sse.write_args(), **sse.copy_source_args())
    assert c.s3.get_object(Bucket=bucket, Key="copy", **sse.read_args())["Body"].read() == large

    # Overwritten through C, read through A; deleted through A, gone on B.
    c.s3.put_object(Bucket=bucket, Key="small", Body=b"second", **sse.write_args())
    assert a.s3.get_object(Bucket=bucket, Key="small", **sse.read_args())["Body"].read() == b"second"
    for key in ("small", "large", "copy"):
        a.s3.delete_object(Bucket=bucket, Key=key)
    assert "Contents" not in b.s3.list_objects_v2(Bucket=bucket)
    assert refused(lambda: b.s3.get_object(Bucket=bucket, Key="large", **sse.read_args())) == "NoSuchKey"


def test_kms_reconfigure_stop_and_start_on_one_node_reach_the_others(cluster):
    a, b, c = cluster.nodes
    default_key = status(a)["default_key_id"]
    for node in (b, c):
        assert status(node)["status"] == "Running" and status(node)["default_key_id"] == default_key

    # Reconfigure on A (a new default key): B and C follow, and create nothing of their own.
    new_default = unique_name("dk")
    body = {"backend_type": "local", "key_dir": str(a.sandbox / "ignored-in-a-cluster"),
            "master_key_file": str(cluster.master_key_file), "default_key_id": new_default}
    assert kms_admin_ok(a, "POST", "/reconfigure", body)["default_key_id"] == new_default
    for node in (b, c):
        eventually(lambda: status(node)["default_key_id"] == new_default and status(node)["status"] == "Running",
                   f"reconfigure seen on {node.endpoint}")
    bucket = unique_name("cl-kms")
    b.s3.create_bucket(Bucket=bucket)
    assert sse_put(b, bucket, "default")["SSEKMSKeyId"] == new_default
    assert b.s3.get_object(Bucket=bucket, Key="default")["Body"].read() == BODY

    # Stop on A: B and C stop serving keys; start on A: they serve again.
    kms_admin_ok(a, "POST", "/stop")
    for node in (b, c):
        eventually(lambda: status(node)["status"] == "Stopped", f"stop seen on {node.endpoint}")
    assert refused(lambda: sse_put(b, bucket, "while-stopped")) == "ServiceUnavailable"
    kms_admin_ok(a, "POST", "/start")
    for node in (b, c):
        eventually(lambda: status(node)["status"] == "Running", f"start seen on {node.endpoint}")
    eventually(lambda: refused(lambda: sse_put(b, bucket, "after-start")) is None, "SSE-KMS PUT on B after start")
    assert b.s3.get_object(Bucket=bucket, Key="default")["Body"].read() == BODY


def test_keys_buckets_and_the_cache_follow_across_nodes(cluster):
    a, b, c = cluster.nodes
    key_id = kms_admin_ok(a, "POST", "/keys", {"key_id": unique_name("cl-key")})["key_id"]
    bucket = unique_name("cl-keys")
    a.s3.create_bucket(Bucket=bucket)
    # A bucket created on A is listed on the others; a key created on A encrypts and decrypts on B and C.
    for node in (b, c):
        assert bucket in [entry["Name"] for entry in node.s3.list_buckets()["Buckets"]]
        assert sse_put(node, bucket, f"on-{node.port}", key_id)["SSEKMSKeyId"] == key_id
        assert node.s3.get_object(Bucket=bucket, Key=f"on-{node.port}")["Body"].read() == BODY
    # B's cache now holds the key's data keys.
    assert status(b)["cache"]["entry_count"] > 0

    # Disabled on A: B and C refuse new writes and reads under it (their cached keys dropped).
    kms_admin_ok(a, "POST", f"/keys/{key_id}/disable")
    for node in (b, c):
        eventually(lambda: refused(lambda: sse_put(node, bucket, "new", key_id)) == "KMS.DisabledException",
                   f"disabled key refused for writes on {node.endpoint}")
        eventually(lambda: refused(lambda: node.s3.get_object(Bucket=bucket, Key=f"on-{node.port}")) is not None,
                   f"disabled key refused for reads on {node.endpoint}")
    # Enabled again on A: both serve again.
    kms_admin_ok(a, "POST", f"/keys/{key_id}/enable")
    for node in (b, c):
        eventually(lambda: refused(lambda: sse_put(node, bucket, "again", key_id)) is None,
                   f"enabled key writes on {node.endpoint}")
        assert node.s3.get_object(Bucket=bucket, Key=f"on-{node.port}")["Body"].read() == BODY

    # Clear-cache on A clears B's cache.
    assert b.s3.get_object(Bucket=bucket, Key="again")["Body"].read() == BODY
    assert status(b)["cache"]["entry_count"] > 0
    kms_admin_ok(a, "POST", "/clear-cache")
    eventually(lambda: status(b)["cache"]["entry_count"] == 0, "clear-cache seen on B")


def test_a_vault_store_added_on_one_node_serves_on_the_others_and_no_secret_is_stored_in_clear(cluster, openbao):
    a, b, c = cluster.nodes
    transit = transit_key(openbao)
    added = kms_admin_ok(a, "POST", "/stores/bao", vault_store(openbao))
    assert added["healthy"] and openbao.token not in str(added), added

    def b_has_the_store():
        status_code, answer = kms_admin(b, "GET", "/stores/bao")
        return status_code == 200 and answer["healthy"]

    eventually(b_has_the_store, "the Vault store on B")
    bucket = unique_name("cl-bao")
    b.s3.create_bucket(Bucket=bucket)
    assert sse_put(b, bucket, "in-bao", f"bao/{transit}")["SSEKMSKeyId"] == f"bao/{transit}"
    assert b.s3.get_object(Bucket=bucket, Key="in-bao")["Body"].read() == BODY
    # A Vault key's lifecycle (which transit has no notion of) is shared too: disabled on A, refused on B and C.
    a.admin_cli("kms", "key", "disable", f"bao/{transit}", "--yes")
    for node in (b, c):
        eventually(lambda: refused(lambda: sse_put(node, bucket, "new", f"bao/{transit}")) == "KMS.DisabledException",
                   f"disabled Vault key refused on {node.endpoint}")
    a.admin_cli("kms", "key", "enable", f"bao/{transit}")
    eventually(lambda: refused(lambda: sse_put(c, bucket, "again", f"bao/{transit}")) is None, "enabled on C")

    # The database holds the KMS state, sealed: neither the Vault token nor the cluster key appears in it.
    rows = cluster.sql("SELECT namespace, name, encode(value, 'hex'), encode(value, 'escape') FROM shared_state;\n"
                       "SELECT topic, detail FROM shared_events;")
    assert "kms|config.json|" in rows, rows
    for secret in (openbao.token.encode(), cluster.cluster_key, cluster.cluster_key.hex().encode()):
        assert secret.hex() not in rows and secret.decode(errors="replace") not in rows
    # Nor in any answer of the admin API or any node's log.
    for node in (a, b, c):
        for path in ("/config", "/stores", "/stores/bao", "/status"):
            assert openbao.token not in str(kms_admin_ok(node, "GET", path)), path
        log = node.log()
        assert openbao.token not in log and cluster.cluster_key.hex() not in log


def test_a_node_with_another_cluster_key_refuses_to_start(cluster, tmp_path):
    a = cluster.nodes[0]
    wrong = private_file(tmp_path / "wrong.key", secrets.token_bytes(32))
    node = CofferServer(sandbox=tmp_path / "wrong", data_dir=tmp_path / "wrong" / "data", port=free_port(),
                        root=a.root, extra_args=cluster.args(key_file=wrong), extra_env=cluster.env())
    (tmp_path / "wrong").mkdir()
    node.launch()
    code = node.process.wait(timeout=60)
    log = node.log()
    assert code != 0, log_tail(node.log_path)
    assert "cluster key" in log and "same key file" in log, log_tail(node.log_path)
    assert cluster.cluster_key.hex() not in log and wrong.read_bytes().hex() not in log


def test_kill_minus_9_of_one_node_during_uploads_loses_no_acknowledged_write(cluster):
    a, b, c = cluster.nodes
    bucket = unique_name("cl-kill")
    a.s3.create_bucket(Bucket=bucket)
    acknowledged: dict[int, list[str]] = {a.port: [], b.port: []}
    stop = threading.Event()

    def upload(node: CofferServer):
        client = node.s3_client()
        count = 0
        while not stop.is_set():
            key = f"{node.port}/{count:05d}"
            try:
                client.put_object(Bucket=bucket, Key=key, Body=BODY, ServerSideEncryption="aws:kms")
            except Exception:
                if node is a:
                    return  # A is gone
                raise
            acknowledged[node.port].append(key)
            count += 1

    writers = [threading.Thread(target=upload, args=(node,)) for node in (a, b)]
    for writer in writers:
        writer.start()
    try:
        eventually(lambda: len(acknowledged[a.port]) >= 20 and len(acknowledged[b.port]) >= 20, "uploads running")
        a.kill()
        # The others keep serving while A is down: B still writes, C lists what both acknowledged.
        seen_b = len(acknowledged[b.port])
        eventually(lambda: len(acknowledged[b.port]) >= seen_b + 20, "uploads on B after A was killed")
    finally:
        stop.set()
        for writer in writers:
            writer.join(timeout=120)
    listed = set()
    for page in c.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        listed.update(entry["Key"] for entry in page.get("Contents", []))
    for port, keys in acknowledged.items():
        missing = [key for key in keys if key not in listed]
        assert not missing, f"acknowledged writes through {port} missing from the listing: {missing[:5]}"
    # Every acknowledged write of the killed node is read through another one (the data is in the shared bucket).
    for key in acknowledged[a.port] + acknowledged[b.port][-3:]:
        assert c.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == BODY, key
    # A restarted on its data directory serves every write it acknowledged before the kill.
    restarted = cluster.start(data_dir=a.data_dir)
    for key in acknowledged[a.port]:
        assert restarted.s3.get_object(Bucket=bucket, Key=key)["Body"].read() == BODY, key
    assert status(restarted)["status"] == "Running"


def test_a_single_node_joining_a_cluster_brings_its_kms_state_and_keeps_its_records(postgres, coffer_factory,
                                                                                    tmp_path):
    database = postgres.create_database()
    url = postgres.url_for(database)
    single = ["--metadata", "postgres", "--metadata-url", url]
    node = coffer_factory(args=single)
    key_id = kms_admin_ok(node, "POST", "/keys", {"key_id": unique_name("kept")})["key_id"]
    bucket = unique_name("cl-join")
    node.s3.create_bucket(Bucket=bucket)
    sse_put(node, bucket, "before", key_id)
    node.stop_and_check()

    # The data directory's record key becomes the cluster key: its records stay readable, its KMS state moves.
    key_file = node.data_dir / ".coffer" / "record-mac.key"
    joined = coffer_factory(args=single + ["--cluster-key-file", str(key_file)], data_dir=node.data_dir)
    assert "imported this node's KMS configuration into the shared KMS state" in joined.log()
    assert joined.s3.get_object(Bucket=bucket, Key="before")["Body"].read() == BODY
    assert kms_admin_ok(joined, "GET", f"/keys/{key_id}")["state"] == "Enabled"
    rows = postgres.psql("SELECT namespace, name FROM shared_state ORDER BY 1, 2;", database=database).stdout
    assert "kms|config.json" in rows and f"|{key_id}" in rows, rows
