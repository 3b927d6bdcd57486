"""Rewrap jobs and key impact reports (docs/rewrap.md, issue 15) against the real release binary.

Objects of every mode (plaintext, SSE-S3, SSE-KMS with a named key and with an encryption context, SSE-KMS under the
default key, SSE-C), written as single PUTs and as multipart uploads (small parts on servers started with a lowered
`--min-part-size`, and a few at the normal 5 MiB minimum), are moved by rewrap jobs while boto3 clients (default
settings) keep overwriting and deleting them; afterwards every object reads back exactly as the client's last
acknowledged write left it, and the impact reports say no object needs the retired key version. A job survives a
kill -9 of the server, moves a bucket from the local store to OpenBao, pauses, resumes and cancels from the CLI,
encrypts plaintext objects and switches SSE-S3 objects to SSE-KMS without touching their data.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from urllib.parse import quote

import pytest

from harness import CofferServer, unique_name
from sse_helpers import (DEFAULT_KMS_KEY, KiB, MiB, Sse, assert_absent, create_kms_key, encryption_context, etag_of,
                         kms_admin, kms_admin_ok, job, job_when_ended, sha256, vault_store)
from storage import storage, stored_object

MIN_PART = 64 * KiB            # the lowered part minimum of the servers here
SMALL_PARTS = [MIN_PART, MIN_PART + 1, 1000]
NORMAL_PARTS = [5 * MiB, MiB + 3]
SIZES = [0, 1, 1000, 4096, 65_536, 65_537, 200_000]


@pytest.fixture
def server(coffer_factory) -> CofferServer:
    return coffer_factory(args=["--min-part-size", str(MIN_PART)])


# ---- what clients wrote ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stored:
    """What a client's last acknowledged write left under a key."""

    sha: str
    size: int
    etag: str
    sse: Sse


def write(s3, bucket: str, key: str, body: bytes, sse: Sse, parts: list[int] | None = None) -> Stored:
    """A single PUT, or a multipart upload in parts of these sizes (the last one takes the rest)."""
    if parts is None:
        etag = etag_of(s3.put_object(Bucket=bucket, Key=key, Body=body, **sse.write_args()))
    else:
        upload = s3.create_multipart_upload(Bucket=bucket, Key=key, **sse.write_args())["UploadId"]
        uploaded, offset = [], 0
        for number, size in enumerate(parts, start=1):
            chunk = body[offset:offset + size] if number < len(parts) else body[offset:]
            reply = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=chunk,
                                   **sse.read_args())
            uploaded.append({"PartNumber": number, "ETag": reply["ETag"]})
            offset += size
        etag = etag_of(s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload,
                                                    MultipartUpload={"Parts": uploaded}))
    return Stored(sha256(body), len(body), etag, sse)


def read_back(s3, bucket: str, key: str, stored: Stored) -> None:
    reply = s3.get_object(Bucket=bucket, Key=key, **stored.sse.read_args())
    body = reply["Body"].read()
    assert (len(body), sha256(body), etag_of(reply)) == (stored.size, stored.sha, stored.etag), \
        f"{bucket}/{key} ({stored.sse}) does not read back as written"


def read_all(s3, catalogue: dict[tuple[str, str], Stored | None]) -> None:
    """Every stored object reads back byte for byte with its ETag; every deleted one is gone; each bucket lists
    exactly the stored keys."""
    present = {name: stored for name, stored in catalogue.items() if stored is not None}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda item: read_back(s3, *item[0], item[1]), present.items()))
    for bucket, key in (name for name, stored in catalogue.items() if stored is None):
        assert_absent(s3, bucket, key)
    for bucket in {bucket for bucket, _ in catalogue}:
        listed = {o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
                  for o in page.get("Contents", [])}
        assert listed == {key for (b, key) in present if b == bucket}, f"{bucket} lists other keys than were written"


def pick_sse(rng: random.Random, kms_key: str) -> Sse:
    """One of the modes, SSE-KMS under a named key (with and without an encryption context) or the default key."""
    return rng.choice([
        Sse.none(), Sse.s3(), Sse.kms(kms_key), Sse.kms(kms_key, encryption_context({"tenant": "t1", "n": "1"})),
        Sse.kms(), Sse.c()])


def key_of(stored: Stored) -> str | None:
    """The KMS key the object depends on (None: plaintext or SSE-C)."""
    if stored.sse.mode == "sse-s3":
        return DEFAULT_KMS_KEY
    if stored.sse.mode == "sse-kms":
        return stored.sse.kms_key_id or DEFAULT_KMS_KEY
    return None


def populate(s3, plan: list[tuple[str, str, int, list[int] | None, Sse]]) -> dict[tuple[str, str], Stored]:
    """Writes (bucket, key, size, parts, sse) for every entry, eight at a time."""

    def one(entry):
        bucket, key, size, parts, sse = entry
        return (bucket, key), write(s3, bucket, key, os.urandom(size), sse, parts)

    with ThreadPoolExecutor(8) as pool:
        return dict(pool.map(one, plan))


def mixed_plan(buckets: list[str], count: int, kms_key: str, seed: int,
               normal_multipart: int = 0) -> list[tuple[str, str, int, list[int] | None, Sse]]:
    """`count` objects spread over the buckets in every mode: single PUTs of assorted sizes, one in twelve a multipart
    upload with small parts, and `normal_multipart` uploads with 5 MiB parts (one per mode, in turn)."""
    rng = random.Random(seed)
    plan = []
    for n in range(count):
        sse = pick_sse(rng, kms_key)
        bucket = buckets[n % len(buckets)]
        if n < normal_multipart:
            sse = [Sse.s3(), Sse.kms(kms_key), Sse.kms(kms_key, encryption_context({"big": "yes"})), Sse.c()][n % 4]
            plan.append((bucket, f"obj/{n:05d}-{sse}-mpu5", sum(NORMAL_PARTS), NORMAL_PARTS, sse))
        elif n % 12 == 0:
            plan.append((bucket, f"obj/{n:05d}-{sse}-mpu", sum(SMALL_PARTS), SMALL_PARTS, sse))
        else:
            plan.append((bucket, f"obj/{n:05d}-{sse}", rng.choice(SIZES), None, sse))
    return plan


# ---- the admin API ---------------------------------------------------------------------------------------------

def key_path(key_id: str, action: str | None = None) -> str:
    """`/keys/KEY[/ACTION]`, with `?store=S` for a key `S/KEY` of another store (docs/admin-api.md)."""
    store, _, key = key_id.rpartition("/")
    path = f"/keys/{quote(key, safe='')}" + (f"/{action}" if action else "")
    return path + (f"?store={store}" if store else "")


def start_job(server: CofferServer, spec: dict) -> dict:
    job = kms_admin_ok(server, "POST", "/jobs/rewrap", spec)
    assert job["state"] == "running" and job["id"].startswith("rewrap-"), job
    return job


def wait_for_job(server: CofferServer, job_id: str, timeout: float = 180) -> dict:
    """Polls the job until it ends; it must have completed without a failure."""
    current = job_when_ended(server, job_id, timeout, poll=0.5)
    assert current["state"] == "completed", current
    assert (current["progress"]["failed"], current["failures"], current["error"]) == (0, [], None), current
    return current


def wait_until(server: CofferServer, job_id: str, examined: int, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while (current := job(server, job_id))["progress"]["examined"] < examined:
        assert current["state"] == "running", current
        assert time.monotonic() < deadline, f"job did not examine {examined} objects in {timeout}s: {current}"
        time.sleep(0.2)
    return current


def rotate(server: CofferServer, key_id: str) -> int:
    return kms_admin_ok(server, "POST", key_path(key_id, "rotate"))["current_version"]


def impact(server: CofferServer, key_id: str) -> dict:
    return kms_admin_ok(server, "GET", key_path(key_id, "impact"))


def objects_below(report: dict, version: int) -> int:
    return sum(v["objects"] for v in report["versions"] if v["version"] < version)


def expected_impact(catalogue: dict[tuple[str, str], Stored | None], key_id: str) -> tuple[int, int]:
    """(objects, bytes) the catalogue says depend on the key."""
    under = [stored for stored in catalogue.values() if stored is not None and key_of(stored) == key_id]
    return len(under), sum(stored.size for stored in under)


def set_min_version(server: CofferServer, key_id: str, version: int) -> None:
    kms_admin_ok(server, "PUT", key_path(key_id, "min-decryption-version"), {"min_decryption_version": version})


def job_ids(server: CofferServer) -> list[str]:
    return [j["id"] for j in kms_admin_ok(server, "GET", "/jobs")["jobs"]]


# ---- clients that keep writing ---------------------------------------------------------------------------------

class Writers:
    """Four boto3 clients (default settings), each owning a quarter of `keys`, overwriting them (single PUTs and small
    multipart uploads, every mode) and deleting them until stopped. Every acknowledged write or delete is recorded in
    the catalogue; each key has one writer, so its last acknowledged state is well defined."""

    def __init__(self, server: CofferServer, catalogue: dict, keys: list[tuple[str, str]], kms_key: str):
        self.server, self.catalogue, self.kms_key = server, catalogue, kms_key
        self.shares = [keys[n::4] for n in range(4)]
        self.stop = threading.Event()
        self.operations = 0
        self.errors: list[BaseException] = []
        self.threads = [threading.Thread(target=self.run, args=(n,)) for n in range(4)]

    def __enter__(self) -> "Writers":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()

    def run(self, worker: int) -> None:
        rng = random.Random(worker)
        s3 = self.server.s3_client()
        try:
            while not self.stop.is_set():
                bucket, key = rng.choice(self.shares[worker])
                if rng.random() < 0.3:
                    s3.delete_object(Bucket=bucket, Key=key)
                    self.catalogue[bucket, key] = None
                else:
                    parts = SMALL_PARTS if rng.random() < 0.1 else None
                    size = sum(SMALL_PARTS) if parts else rng.choice(SIZES)
                    sse = pick_sse(rng, self.kms_key)
                    self.catalogue[bucket, key] = write(s3, bucket, key, os.urandom(size), sse, parts)
                self.operations += 1
        except BaseException as error:  # reported by the test: a client's request must not fail during a job
            self.errors.append(error)


# ---- the scenarios ---------------------------------------------------------------------------------------

def test_rewrap_of_2000_objects_while_clients_overwrite_and_delete_them(server):
    s3 = server.s3
    kms_key = create_kms_key(server, unique_name("rw-key"))
    buckets = [unique_name("rw-a"), unique_name("rw-b")]
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    catalogue: dict[tuple[str, str], Stored | None] = populate(s3, mixed_plan(buckets, 2000, kms_key, seed=1,
                                                                              normal_multipart=4))
    stable = {name: stored for n, (name, stored) in enumerate(sorted(catalogue.items())) if n % 10}
    busy = sorted(set(catalogue) - set(stable))  # every tenth key, spread over the whole walk
    for key_id in (kms_key, DEFAULT_KMS_KEY):
        assert rotate(server, key_id) == 2
        assert objects_below(impact(server, key_id), 2) == expected_impact(catalogue, key_id)[0] > 100
        status, refused = kms_admin(server, "PUT", key_path(key_id, "min-decryption-version"),
                                    {"min_decryption_version": 2})
        assert (status, refused["code"]) == (409, "KeyVersionInUse"), refused

    with Writers(server, catalogue, busy, kms_key) as writers:
        time.sleep(1)
        started = start_job(server, {"objects_per_second": 250})
        during = writers.operations
        done = wait_for_job(server, started["id"])
        during = writers.operations - during
    assert not writers.errors, f"a client's request failed during the job: {writers.errors[0]!r}"
    assert during > 50, f"the clients got only {during} requests done while the job ran"

    progress = done["progress"]
    encrypted = sum(key_of(stored) is not None for stored in stable.values())
    customer = sum(stored.sse.mode == "sse-c" for stored in stable.values())
    assert 2000 - len(busy) <= progress["total"] <= 2000, progress
    assert encrypted <= progress["changed"] <= encrypted + len(busy), progress
    assert customer <= progress["skipped_sse_c"] <= customer + len(busy), progress
    assert progress["examined"] >= progress["changed"] + progress["unchanged"] + progress["skipped_sse_c"], progress
    assert progress["bytes"] >= sum(stored.size for stored in stable.values() if key_of(stored)), progress

    read_all(s3, catalogue)
    for key_id in (kms_key, DEFAULT_KMS_KEY):
        report = impact(server, key_id)
        assert objects_below(report, 2) == 0, report
        assert (report["objects"], report["bytes"]) == expected_impact(catalogue, key_id), report
        set_min_version(server, key_id, 2)
    kms_admin_ok(server, "POST", "/clear-cache")  # so every read below opens its key in the KMS again
    read_all(s3, catalogue)


def test_a_job_killed_mid_way_resumes_after_the_restart(coffer_factory):
    args = ["--min-part-size", str(MIN_PART)]
    server = coffer_factory(args=args)
    kms_key = create_kms_key(server, unique_name("rw-kill"))
    bucket = unique_name("rw-kill")
    server.s3.create_bucket(Bucket=bucket)
    catalogue = populate(server.s3, mixed_plan([bucket], 500, kms_key, seed=2))
    for key_id in (kms_key, DEFAULT_KMS_KEY):
        rotate(server, key_id)
    started = start_job(server, {"buckets": [bucket], "objects_per_second": 50, "concurrency": 2})
    before = wait_until(server, started["id"], examined=100)
    assert before["progress"]["total"] == 500, before
    server.kill()
    assert storage(server).job_records(), "no job record stored"

    restarted = coffer_factory(args=args, data_dir=server.data_dir)
    resumed = job(restarted, started["id"])
    # It goes on from the position it recorded, not from the start.
    assert resumed["state"] == "running" and 0 < resumed["progress"]["examined"] < 500, resumed
    done = wait_for_job(restarted, started["id"])
    progress = done["progress"]
    assert progress["total"] == progress["examined"] == 500, progress
    assert progress["changed"] + progress["unchanged"] + progress["skipped_sse_c"] == 500, progress
    assert progress["skipped_sse_c"] == sum(stored.sse.mode == "sse-c" for stored in catalogue.values()), progress

    for key_id in (kms_key, DEFAULT_KMS_KEY):
        report = impact(restarted, key_id)
        assert objects_below(report, 2) == 0, report
        assert (report["objects"], report["bytes"]) == expected_impact(catalogue, key_id), report
    kms_admin_ok(restarted, "POST", "/clear-cache")
    read_all(restarted.s3, catalogue)


@pytest.mark.openbao
def test_a_bucket_moves_from_the_local_store_to_openbao(server, openbao):
    s3 = server.s3
    bucket, other = unique_name("rw-photos"), unique_name("rw-stay")
    for name in (bucket, other):
        s3.create_bucket(Bucket=name)
    local_key = create_kms_key(server, unique_name("photos-key"))
    kms_admin_ok(server, "PUT", f"/buckets/{bucket}/key", {"key_id": local_key})
    catalogue = populate(s3, [
        (bucket, "s3", 1000, None, Sse.s3()), (bucket, "s3-big", 200_000, None, Sse.s3()),
        (bucket, "s3-mpu", sum(SMALL_PARTS), SMALL_PARTS, Sse.s3()), (bucket, "kms-bucket-key", 5000, None, Sse.kms()),
        (bucket, "kms-named", 70_000, None, Sse.kms(local_key, encryption_context({"dept": "photo"}))),
        (bucket, "kms-mpu", sum(SMALL_PARTS), SMALL_PARTS, Sse.kms(local_key)),
        (bucket, "plain", 3000, None, Sse.none()), (bucket, "customer", 3000, None, Sse.c()),
        (other, "kms-named", 2000, None, Sse.kms(local_key)),  # another bucket: not moved
    ])
    assert impact(server, local_key)["objects"] == 7

    kms_admin_ok(server, "POST", "/stores/bao", vault_store(openbao))
    bao_key = create_kms_key(server, "bao/" + unique_name("photos-key"))
    server.admin_cli("kms", "bucket-key", "set", bucket, bao_key, json_output=False)
    moved = server.admin_cli("kms", "rewrap", "--bucket", bucket, "--from-store", "local", "--to-key", bao_key,
                             json_output=False)
    assert "completed" in moved.stdout.lower(), moved.stdout

    # The documented check names the key with its store.
    report = json.loads(server.admin_cli("kms", "key", "impact", f"local/{local_key}").stdout)
    assert (report["objects"], [b["bucket"] for b in report["buckets"]]) == (1, [other]), report
    assert kms_admin_ok(server, "GET", "/stores/local/impact")["buckets"] == [
        {"bucket": other, "objects": 1, "bytes": 2000}]
    assert kms_admin_ok(server, "GET", "/stores/bao/impact")["buckets"] == [
        {"bucket": bucket, "objects": 6, "bytes": sum(stored.size for (b, _), stored in catalogue.items()
                                                       if b == bucket and key_of(stored))}]
    moved_report = impact(server, bao_key)
    assert (moved_report["store"], moved_report["objects"]) == ("bao", 6), moved_report
    assert s3.head_object(Bucket=bucket, Key="kms-named")["SSEKMSKeyId"] == bao_key
    assert f"transit/encrypt/{bao_key.split('/', 1)[1]}" in openbao.audit_log.read_text()

    # The other bucket's object goes too; then nothing needs the local key and it can be scheduled for deletion.
    wait_for_job(server, start_job(server, {"buckets": [other], "to": {"key": bao_key}})["id"])
    assert impact(server, local_key)["objects"] == 0
    assert kms_admin_ok(server, "GET", "/stores/local/impact")["objects"] == 0
    server.admin_cli("kms", "key", "delete", local_key, "--pending-window-days", "7", json_output=False, input="")
    assert kms_admin_ok(server, "GET", key_path(local_key))["state"] == "PendingDeletion"
    kms_admin_ok(server, "POST", "/clear-cache")
    read_all(s3, catalogue)


# ---- job control, dry runs, mode changes -------------------------------------------------------------------------

def test_a_dry_run_changes_nothing_and_counts_what_would_change(server):
    s3 = server.s3
    kms_key = create_kms_key(server, unique_name("rw-dry"))
    bucket = unique_name("rw-dry")
    s3.create_bucket(Bucket=bucket)
    catalogue = populate(s3, mixed_plan([bucket], 120, kms_key, seed=3))
    rotate(server, kms_key)
    under_key = [stored for stored in catalogue.values() if key_of(stored) == kms_key]
    before, files = impact(server, kms_key), storage(server).snapshot()
    assert objects_below(before, 2) == len(under_key) > 10, before

    dry = start_job(server, {"from": {"key": kms_key}, "dry_run": True})
    assert dry["dry_run"] is True, dry
    progress = wait_for_job(server, dry["id"])["progress"]
    assert (progress["changed"], progress["bytes"]) == (len(under_key), sum(s.size for s in under_key)), progress
    assert progress["skipped_sse_c"] == sum(s.sse.mode == "sse-c" for s in catalogue.values()), progress
    assert impact(server, kms_key) == before
    assert storage(server).snapshot() == files, "a dry run changed stored objects"

    printed = server.admin_cli("kms", "rewrap", "--from-key", kms_key, "--dry-run")
    assert json.loads(printed.stdout)["progress"]["changed"] == len(under_key), printed.stdout
    assert impact(server, kms_key) == before and storage(server).snapshot() == files
    read_all(s3, catalogue)


def test_pause_resume_and_cancel_from_the_cli(server):
    s3 = server.s3
    kms_key = create_kms_key(server, unique_name("rw-ctl"))
    bucket = unique_name("rw-ctl")
    s3.create_bucket(Bucket=bucket)
    catalogue = populate(s3, [(bucket, f"k{n:04d}", 100, None, Sse.kms(kms_key)) for n in range(300)])
    rotate(server, kms_key)

    started = json.loads(server.admin_cli("kms", "rewrap", "--from-key", kms_key, "--objects-per-second", "20",
                                          "--detach").stdout)
    job_id = started["id"]
    assert json.loads(server.admin_cli("kms", "jobs", "list").stdout)["jobs"][0]["id"] == job_id
    wait_until(server, job_id, examined=10)
    paused = json.loads(server.admin_cli("kms", "jobs", "pause", job_id).stdout)
    assert paused["state"] == "paused", paused
    time.sleep(0.5)
    held = job(server, job_id)["progress"]["examined"]
    time.sleep(1.5)
    shown = json.loads(server.admin_cli("kms", "jobs", "show", job_id).stdout)
    assert (shown["state"], shown["progress"]["examined"]) == ("paused", held), shown

    assert json.loads(server.admin_cli("kms", "jobs", "resume", job_id).stdout)["state"] == "running"
    wait_until(server, job_id, examined=held + 20)
    cancelled = json.loads(server.admin_cli("kms", "jobs", "cancel", job_id).stdout)
    assert cancelled["state"] == "cancelled", cancelled
    time.sleep(0.5)
    final = job(server, job_id)
    time.sleep(1.5)
    assert job(server, job_id) == final and final["state"] == "cancelled" and final["finished_at"], final
    left = objects_below(impact(server, kms_key), 2)
    assert 0 < left < 300 - held, (left, final)
    assert server.admin_cli("kms", "jobs", "resume", job_id, check=False).returncode != 0
    assert job(server, job_id)["state"] == "cancelled"
    read_all(s3, catalogue)


def test_plaintext_objects_are_encrypted(server):
    s3 = server.s3
    kms_key = create_kms_key(server, unique_name("rw-plain"))
    bucket = unique_name("rw-plain")
    s3.create_bucket(Bucket=bucket)
    bodies = {"inline": os.urandom(3000), "file": os.urandom(200_000), "mpu": os.urandom(sum(SMALL_PARTS)),
              "kms": os.urandom(3000), "customer": os.urandom(3000)}
    catalogue = {}
    for key, sse in (("inline", Sse.none()), ("file", Sse.none()), ("mpu", Sse.none()), ("kms", Sse.kms(kms_key)),
                     ("customer", Sse.c())):
        catalogue[bucket, key] = write(s3, bucket, key, bodies[key], sse, SMALL_PARTS if key == "mpu" else None)
    plain = ("inline", "file", "mpu")
    samples = {bodies[key][1000:1064]: key for key in plain}
    assert {samples[needle] for _, needle in storage(server).files_containing(samples)} == set(plain)

    out = server.admin_cli("kms", "rewrap", "--bucket", bucket, "--from-mode", "plaintext", "--to-mode", "sse-s3")
    progress = json.loads(out.stdout)["progress"]
    # The SSE-KMS and the SSE-C object match no filter.
    assert (progress["changed"], progress["unchanged"] + progress["skipped_sse_c"], progress["failed"]) == (
        3, 2, 0), progress
    for key in plain:
        head = s3.head_object(Bucket=bucket, Key=key)
        assert head["ServerSideEncryption"] == "AES256", head
        catalogue[bucket, key] = replace(catalogue[bucket, key], sse=Sse.s3())
    for key in ("inline", "file"):  # a single PUT's ETag is its MD5, in plaintext and SSE-S3 alike
        assert s3.head_object(Bucket=bucket, Key=key)["ETag"].strip('"') == catalogue[bucket, key].etag
    catalogue[bucket, "mpu"] = replace(catalogue[bucket, "mpu"], etag=etag_of(s3.head_object(Bucket=bucket, Key="mpu")))
    # With the S3 data engine the replaced plaintext goes when its grace period ends.
    storage(server).wait_for_released_deletion()
    left = [(place, samples[needle]) for place, needle in storage(server).files_containing(samples)]
    assert not left, f"plaintext left on disk (file, object): {left}"
    assert impact(server, DEFAULT_KMS_KEY)["objects"] == 3
    read_all(s3, catalogue)


def test_sse_s3_objects_move_to_sse_kms_without_their_data_changing(server):
    s3 = server.s3
    kms_key = create_kms_key(server, unique_name("rw-mode"))
    bucket = unique_name("rw-mode")
    s3.create_bucket(Bucket=bucket)
    catalogue = populate(s3, [(bucket, "inline", 3000, None, Sse.s3()), (bucket, "file", 200_000, None, Sse.s3()),
                              (bucket, "mpu", sum(SMALL_PARTS), SMALL_PARTS, Sse.s3())])
    data_files = {key: [p.read_bytes() for p in stored_object(server, bucket, key).data_files()]
                  for key in ("file", "mpu")}

    job_doc = start_job(server, {"buckets": [bucket], "from": {"mode": "sse-s3"},
                                 "to": {"mode": "sse-kms", "key": kms_key}})
    assert wait_for_job(server, job_doc["id"])["progress"]["changed"] == 3
    for key in ("inline", "file", "mpu"):
        head = s3.head_object(Bucket=bucket, Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", kms_key), head
        catalogue[bucket, key] = replace(catalogue[bucket, key], sse=Sse.kms(kms_key))
    for key, contents in data_files.items():
        assert [p.read_bytes() for p in stored_object(server, bucket, key).data_files()] == contents, \
            f"{key}: a mode change rewrote the data"
    assert (impact(server, kms_key)["objects"], impact(server, DEFAULT_KMS_KEY)["objects"]) == (3, 0)
    read_all(s3, catalogue)  # the ETags too


@pytest.mark.parametrize("spec, field", [
    ({"from": {"key": "no-such-key"}}, "from.key"),
    ({"to": {"key": "no-such-key"}}, "to.key"),
    ({"to": {"key": "nostore/key"}}, "to.key"),
    ({"from": {"store": "nostore"}}, "from.store"),
    ({"buckets": ["no-such-bucket"]}, "bucket"),
    ({"from": {"mode": "sse-x"}}, "from.mode"),
    ({"to": {"mode": "sse-c"}}, "to.mode"),
    ({"to": {"mode": "plaintext"}}, "to.mode"),
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": 65}, "concurrency"),
    ({"objects_per_second": -1}, "objects_per_second"),
    ({"from": {"versions_below": "two"}}, "from.versions_below"),
    ({"speed": 3}, "speed"),
], ids=lambda value: json.dumps(value) if isinstance(value, dict) else None)
def test_a_bad_spec_is_a_400_and_starts_no_job(coffer, spec, field):
    before = job_ids(coffer)
    status, answer = kms_admin(coffer, "POST", "/jobs/rewrap", spec)
    assert status == 400 and isinstance(answer, dict) and answer["code"] and answer["message"], (status, answer)
    assert field.split(".")[-1] in answer["message"] + str(answer.get("field")), answer
    assert job_ids(coffer) == before


def test_key_and_store_impact_reports(server):
    s3 = server.s3
    kms_key = create_kms_key(server, unique_name("rw-impact"))
    first, second = unique_name("rw-imp-a"), unique_name("rw-imp-b")
    for bucket in (first, second):
        s3.create_bucket(Bucket=bucket)
    write(s3, first, "v1-a", os.urandom(1000), Sse.kms(kms_key))
    write(s3, first, "v1-b", os.urandom(70_000), Sse.kms(kms_key, encryption_context({"a": "b"})), None)
    write(s3, first, "v1-mpu", os.urandom(sum(SMALL_PARTS)), Sse.kms(kms_key), SMALL_PARTS)
    rotate(server, kms_key)
    write(s3, second, "v2", os.urandom(5000), Sse.kms(kms_key))
    write(s3, second, "s3", os.urandom(300), Sse.s3())
    write(s3, second, "plain", os.urandom(300), Sse.none())
    write(s3, second, "customer", os.urandom(300), Sse.c())
    # An upload in progress is not counted.
    upload = s3.create_multipart_upload(Bucket=first, Key="pending", **Sse.kms(kms_key).write_args())["UploadId"]
    s3.upload_part(Bucket=first, Key="pending", UploadId=upload, PartNumber=1, Body=os.urandom(MIN_PART))

    v1_bytes = 1000 + 70_000 + sum(SMALL_PARTS)
    report = impact(server, kms_key)
    report["buckets"].sort(key=lambda b: b["bucket"])
    report["versions"].sort(key=lambda v: v["version"])
    assert report == {
        "store": "local", "key": f"local/{kms_key}", "objects": 4, "bytes": v1_bytes + 5000,
        "buckets": sorted([{"bucket": first, "objects": 3, "bytes": v1_bytes},
                           {"bucket": second, "objects": 1, "bytes": 5000}], key=lambda b: b["bucket"]),
        "versions": [{"version": 1, "objects": 3, "bytes": v1_bytes}, {"version": 2, "objects": 1, "bytes": 5000}],
    }
    store = kms_admin_ok(server, "GET", "/stores/local/impact")
    store["buckets"].sort(key=lambda b: b["bucket"])
    assert store == {"store": "local", "key": None, "objects": 5, "bytes": v1_bytes + 5300,
                     "buckets": sorted([{"bucket": first, "objects": 3, "bytes": v1_bytes},
                                        {"bucket": second, "objects": 2, "bytes": 5300}], key=lambda b: b["bucket"])}
    assert json.loads(server.admin_cli("kms", "key", "impact", kms_key).stdout)["objects"] == 4
    table = server.admin_cli("kms", "key", "impact", kms_key, json_output=False).stdout
    assert first in table and second in table, table
    status, answer = kms_admin(server, "GET", "/stores/nostore/impact")
    assert (status, answer["code"]) == (404, "StoreNotFound"), answer


def test_the_impact_of_a_key_that_does_not_exist_is_a_404(coffer):
    # Not "0 objects": a mistyped key id must not read as "safe to delete".
    status, answer = kms_admin(coffer, "GET", key_path(unique_name("no-such-key"), "impact"))
    assert (status, isinstance(answer, dict) and answer.get("code")) == (404, "KeyNotFound"), answer


def test_disabling_or_deleting_a_key_that_objects_need_asks_first(server):
    s3 = server.s3
    used, unused = create_kms_key(server, unique_name("rw-used")), create_kms_key(server, unique_name("rw-unused"))
    bucket = unique_name("rw-disable")
    s3.create_bucket(Bucket=bucket)
    write(s3, bucket, "needs-it", os.urandom(100), Sse.kms(used))

    for command in (["disable", used], ["delete", used, "--pending-window-days", "7"]):
        refused = server.admin_cli("kms", "key", *command, json_output=False, check=False, input="")
        assert refused.returncode != 0 and "1 object" in refused.stdout + refused.stderr, refused
        assert kms_admin_ok(server, "GET", key_path(used))["state"] == "Enabled"
    server.admin_cli("kms", "key", "disable", used, "--yes", json_output=False, input="")
    assert kms_admin_ok(server, "GET", key_path(used))["state"] == "Disabled"
    server.admin_cli("kms", "key", "disable", unused, json_output=False, input="")
    assert kms_admin_ok(server, "GET", key_path(unused))["state"] == "Disabled"
