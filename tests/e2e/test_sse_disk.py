"""What the server keeps on disk for encrypted objects, checked by reading its data directory (through storage.py,
whichever metadata engine wrote it).

- No file under DATA ever contains the plaintext of an encrypted object (every SSE mode, single PUT, multipart,
  copy, UploadPartCopy, bucket default), nor an SSE-C key; a plaintext control object proves the search finds what
  is there.
- Internal encryption metadata (sealed and wrapped keys) never reaches a response header or a listing.
- One flipped byte in an object's data file, a truncated data file or data files swapped between two objects make
  GET fail with an error — never a complete, successful read — while untouched packages stay readable by range.
  Bytes appended after the final package make GET fail too.
"""

from __future__ import annotations

import json
import secrets

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from harness import CofferServer, unique_name
from sse_helpers import (DEFAULT_KMS_KEY, MARKER, PACKAGE, MiB, CustomerKey, Sse, encryption_context, multipart_put,
                         no_retry_client, random_bytes, running_server)
from storage import flip_byte, storage, stored_object


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> CofferServer:
    with running_server(tmp_path_factory) as started:
        yield started


@pytest.fixture(scope="module")
def kms_key() -> str:
    """The server's default key, named explicitly (the disk checks need no other key)."""
    return DEFAULT_KMS_KEY


def canary_body(size: int) -> tuple[bytes, bytes]:
    """(marker, body): the body is the marker and a line number over and over, so any stretch of plaintext that
    reaches the disk contains the marker."""
    marker = b"COFFER-PLAINTEXT-CANARY-" + secrets.token_hex(8).encode()
    lines, total, number = [], 0, 0
    while total < size:
        line = marker + b"-%010d\n" % number
        lines.append(line)
        total += len(line)
        number += 1
    return marker, b"".join(lines)[:size]


def test_plaintext_and_customer_keys_never_reach_the_disk(server, kms_key):
    s3 = server.s3
    bucket, default_bucket = unique_name("sse-disk"), unique_name("sse-disk-default")
    for name in (bucket, default_bucket):
        s3.create_bucket(Bucket=name)
    s3.put_bucket_encryption(Bucket=default_bucket, ServerSideEncryptionConfiguration={
        "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": kms_key}}]})
    customer, copy_customer = CustomerKey.generate(), CustomerKey.generate()
    # small objects are kept in their record, larger ones in data files
    small, single, large = 1000, 3 * PACKAGE + 777, 5 * MiB + 2 * PACKAGE + 5
    markers: dict[str, bytes] = {}

    def put(name: str, size: int, sse: Sse, multipart: bool = False, target: str = bucket) -> bytes:
        marker, body = canary_body(size)
        markers[name] = marker
        if multipart:
            multipart_put(s3, target, name, body, sse)
        else:
            s3.put_object(Bucket=target, Key=name, Body=body, **sse.write_args())
        return body

    put("sse-s3-small", small, Sse.s3())
    put("sse-kms-small", small, Sse.kms(kms_key))
    put("sse-c-small", small, Sse.c(customer))
    put("bucket-default-small", small, Sse.none(), target=default_bucket)
    put("sse-s3", single, Sse.s3())
    put("sse-s3-multipart", large, Sse.s3(), multipart=True)
    put("sse-kms", single, Sse.kms(kms_key, context=encryption_context({"disk": "test"})))
    put("sse-kms-default-multipart", large, Sse.kms(), multipart=True)
    put("sse-c", single, Sse.c(customer))
    put("sse-c-multipart", large, Sse.c(customer), multipart=True)
    put("bucket-default", single, Sse.none(), target=default_bucket)
    put("bucket-default-multipart", large, Sse.none(), multipart=True, target=default_bucket)

    # copies: the destination is re-encrypted; the encrypted source's plaintext must not appear either
    source_body = put("copy-source-sse-c", single, Sse.c(copy_customer))
    s3.copy_object(Bucket=bucket, Key="copy-dest-sse-s3", CopySource={"Bucket": bucket, "Key": "copy-source-sse-c"},
                   ServerSideEncryption="AES256", **copy_customer.boto_copy_source())
    assert s3.get_object(Bucket=bucket, Key="copy-dest-sse-s3")["Body"].read() == source_body
    upc_body = put("upc-source-sse-kms", large, Sse.kms(kms_key))
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="upc-dest-sse-c", **customer.boto())["UploadId"]
    reply = s3.upload_part_copy(Bucket=bucket, Key="upc-dest-sse-c", UploadId=upload_id, PartNumber=1,
                                CopySource={"Bucket": bucket, "Key": "upc-source-sse-kms"}, **customer.boto())
    s3.complete_multipart_upload(Bucket=bucket, Key="upc-dest-sse-c", UploadId=upload_id, MultipartUpload={
        "Parts": [{"PartNumber": 1, "ETag": reply["CopyPartResult"]["ETag"]}]})
    assert s3.get_object(Bucket=bucket, Key="upc-dest-sse-c", **customer.boto())["Body"].read() == upc_body
    # an SSE-C upload still in progress: its parts are on disk too
    pending_marker, pending_body = canary_body(2 * PACKAGE)
    markers["pending-sse-c-part"] = pending_marker
    pending = s3.create_multipart_upload(Bucket=bucket, Key="pending", **customer.boto())["UploadId"]
    s3.upload_part(Bucket=bucket, Key="pending", UploadId=pending, PartNumber=1, Body=pending_body, **customer.boto())

    # the controls: plaintext objects, which must be found, proving the search looks where the data is
    controls = {}
    for name, size in (("plaintext-control", single), ("plaintext-control-small", small)):
        controls[name], control_body = canary_body(size)
        s3.put_object(Bucket=bucket, Key=name, Body=control_body)

    secrets_ = {"customer key": customer.raw, "customer key base64": customer.b64.encode(),
                "copy customer key": copy_customer.raw, "copy customer key base64": copy_customer.b64.encode()}
    needles = list(markers.values()) + list(controls.values()) + list(secrets_.values())
    stored = storage(server)
    found = stored.files_containing(needles)
    names = {needle: name for name, needle in {**markers, **secrets_, **controls}.items()}
    for name, marker in controls.items():
        assert any(needle == marker for _, needle in found), \
            f"the {name} plaintext was not found under {server.data_dir}: the search is broken"
    leaks = [(place, names[needle]) for place, needle in found if needle not in controls.values()]
    assert not leaks, f"plaintext or keys found on disk: {leaks}"
    assert len(stored.all_files()) + len(stored.remote_data_files()) > len(markers), \
        "the data dir (and data bucket) hold less than expected"

    log = server.log()
    for name, secret in secrets_.items():
        assert secret.decode() not in log, f"the {name} appears in the server log"


def internal_strings(value) -> set[str]:
    """Every string of 16 characters or more in stored encryption metadata (sealed keys, wrapped keys, salts)."""
    if isinstance(value, str):
        return {value} if len(value) >= 16 else set()
    if isinstance(value, dict):
        return set().union(*(internal_strings(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(internal_strings(v) for v in value)) if value else set()
    return set()


def test_internal_encryption_metadata_never_reaches_responses(server, kms_key):
    s3 = server.s3
    bucket = unique_name("sse-leak")
    s3.create_bucket(Bucket=bucket)
    customer = CustomerKey.generate()
    choices = {"sse-s3": Sse.s3(), "sse-kms": Sse.kms(kms_key, context=encryption_context({"a": "b"})),
               "sse-c": Sse.c(customer)}
    secrets_found: set[str] = set()
    texts = []
    for key, sse in choices.items():
        multipart_put(s3, bucket, key, random_bytes(5 * MiB + 10, seed=len(key)), sse)
        meta = stored_object(server, bucket, key).record()["meta"]
        secrets_found |= internal_strings(meta.get("encryption"))
        for part in meta["parts"]:
            secrets_found |= internal_strings(part.get("encryption"))
        for reply in (s3.head_object(Bucket=bucket, Key=key, **sse.read_args()),
                      s3.get_object(Bucket=bucket, Key=key, Range="bytes=0-9", **sse.read_args()),
                      s3.get_object(Bucket=bucket, Key=key, PartNumber=2, **sse.read_args())):
            assert reply.get("Metadata", {}) == {}, reply.get("Metadata")
            texts.append(json.dumps(reply["ResponseMetadata"]["HTTPHeaders"]))
    assert secrets_found, "no encryption metadata found in the object records: the layout changed?"
    # what responses do carry on purpose: the key id as named, the context as sent, the SSE-C key's MD5
    secrets_found -= {kms_key, choices["sse-kms"].context, customer.md5_b64}

    pending = s3.create_multipart_upload(Bucket=bucket, Key="pending", **customer.boto())["UploadId"]
    s3.upload_part(Bucket=bucket, Key="pending", UploadId=pending, PartNumber=1, Body=b"part", **customer.boto())
    for path in (f"/{bucket}?list-type=2", f"/{bucket}", f"/{bucket}?uploads",
                 f"/{bucket}/pending?uploadId={pending}", f"/{bucket}/sse-kms?attributes"):
        result = server.awscurl(path, *(["-H", "x-amz-object-attributes: ETag,ObjectParts,ObjectSize"]
                                        if "attributes" in path else []), check=False)
        texts.append(result.stdout)
    leaked = [secret for secret in secrets_found if any(secret in text for text in texts)]
    assert not leaked, f"internal encryption metadata in responses: {len(leaked)} values"


# ---- tampering -----------------------------------------------------------------------------------------------------

def get_error(s3, bucket: str, key: str, expected: bytes, **params) -> Exception:
    """GET must fail: an error answer, or a body stream that breaks off (short, bad checksum, connection reset).
    A complete, successful read of tampered data fails the test, whatever its bytes."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key, **params)["Body"].read()
    except (ClientError, BotoCoreError) as error:
        return error
    pytest.fail(f"GET of tampered data succeeded: {len(body)} bytes, identical to the original: {body == expected}")


TAMPER_MODES = ["sse-s3", "sse-kms", "sse-c", "sse-c-multipart"]


@pytest.mark.parametrize("mode", TAMPER_MODES)
def test_one_flipped_byte_makes_get_fail(server, kms_key, tmp_path, mode):
    s3 = no_retry_client(server)
    bucket = unique_name("sse-tamper")
    s3.create_bucket(Bucket=bucket)
    sse = {"sse-s3": Sse.s3(), "sse-kms": Sse.kms(kms_key), "sse-c": Sse.c(), "sse-c-multipart": Sse.c()}[mode]
    if mode == "sse-c-multipart":
        body = random_bytes(5 * MiB + 3 * PACKAGE + 11, seed=51)
        multipart_put(s3, bucket, "obj", body, sse)
        data_file = stored_object(server, bucket, "obj").data_files()[1]  # the second part's file
        part_start = 5 * MiB
    else:
        body = random_bytes(5 * PACKAGE + 11, seed=52)
        s3.put_object(Bucket=bucket, Key="obj", Body=body, **sse.write_args())
        [data_file] = stored_object(server, bucket, "obj").data_files()
        part_start = 0
    read = sse.read_args()
    size = data_file.stat().st_size
    assert size > len(body) - part_start, "the stored part is not larger than its plaintext: no tags?"

    for offset in (0, 7, PACKAGE + 100, size // 2, size - 1):
        original = flip_byte(data_file, offset)
        try:
            get_error(s3, bucket, "obj", body, **read)
            # the package holding the flipped byte cannot be read by range either
            package = min(max(0, offset - MARKER) // (PACKAGE + 16), (len(body) - part_start - 1) // PACKAGE)
            first = part_start + package * PACKAGE
            get_error(s3, bucket, "obj", body[first:first + 10], Range=f"bytes={first}-{first + 9}", **read)
            if offset == 0 and mode == "sse-c":  # the aws CLI retries (with backoff) before it gives up: once
                result = server.aws("s3", "cp", f"s3://{bucket}/obj", str(tmp_path / "obj"),
                                    *sse.customer.cli_cp(), check=False)
                assert result.returncode != 0, "aws s3 cp downloaded a tampered object without an error"
        finally:
            data_file.write_bytes(original)
    # restored: the object reads again, so the failures above came from the flipped bytes
    assert s3.get_object(Bucket=bucket, Key="obj", **read)["Body"].read() == body


@pytest.mark.parametrize("mode", ["sse-s3", "sse-kms", "sse-c"])
def test_one_flipped_byte_in_a_small_object_makes_get_fail(server, kms_key, mode):
    """Small objects keep their ciphertext in their record (inline_data): tampering there is caught just the same."""
    s3 = no_retry_client(server)
    bucket = unique_name("sse-tamper")
    s3.create_bucket(Bucket=bucket)
    sse = {"sse-s3": Sse.s3(), "sse-kms": Sse.kms(kms_key), "sse-c": Sse.c()}[mode]
    body = random_bytes(1000, seed=54)
    s3.put_object(Bucket=bucket, Key="obj", Body=body, **sse.write_args())
    obj = stored_object(server, bucket, "obj")
    assert obj.data_files() == []
    stored = obj.inline_data()
    assert stored is not None and len(stored) == MARKER + len(body) + 16, "the marker, one package and its tag"
    read = sse.read_args()
    with obj.restored():
        for offset in (0, 500, len(body), len(stored) - 1):
            obj.set_inline_data(stored[:offset] + bytes([stored[offset] ^ 1]) + stored[offset + 1:])
            get_error(s3, bucket, "obj", body, **read)
        obj.set_inline_data(stored[:-16])  # the final tag cut off
        get_error(s3, bucket, "obj", body, **read)
    assert s3.get_object(Bucket=bucket, Key="obj", **read)["Body"].read() == body


def test_untouched_packages_stay_readable_by_range(server, kms_key):
    s3 = no_retry_client(server)
    bucket = unique_name("sse-tamper")
    s3.create_bucket(Bucket=bucket)
    body = random_bytes(6 * PACKAGE, seed=53)
    s3.put_object(Bucket=bucket, Key="obj", Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key)
    [data_file] = stored_object(server, bucket, "obj").data_files()
    original = flip_byte(data_file, MARKER + 4 * (PACKAGE + 16) + 5)  # inside the fifth package
    try:
        get_error(s3, bucket, "obj", body)
        first_two = s3.get_object(Bucket=bucket, Key="obj", Range=f"bytes=0-{2 * PACKAGE - 1}")["Body"].read()
        assert first_two == body[:2 * PACKAGE]
    finally:
        data_file.write_bytes(original)


def test_truncated_or_swapped_data_files_make_get_fail(server, kms_key):
    s3 = no_retry_client(server)
    bucket = unique_name("sse-tamper")
    s3.create_bucket(Bucket=bucket)
    bodies = {name: random_bytes(3 * PACKAGE + 1, seed=60 + n) for n, name in enumerate(("a", "b"))}
    for name, body in bodies.items():
        s3.put_object(Bucket=bucket, Key=name, Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key)
    [file_a], [file_b] = (stored_object(server, bucket, name).data_files() for name in ("a", "b"))
    saved_a, saved_b = file_a.read_bytes(), file_b.read_bytes()
    assert len(saved_a) == len(saved_b)
    try:
        # another object's ciphertext, same size, same key, same bucket: still refused
        file_a.write_bytes(saved_b)
        file_b.write_bytes(saved_a)
        get_error(s3, bucket, "a", bodies["a"])
        get_error(s3, bucket, "b", bodies["b"])
        # the last package (and its "final" mark) cut off, or part of it
        for cut in (16, PACKAGE // 2, (len(saved_a) - MARKER - 1) % (PACKAGE + 16) + 1):
            file_a.write_bytes(saved_a[:-cut])
            get_error(s3, bucket, "a", bodies["a"])
        # a package appended after the final one: the stored length no longer matches, so the object is refused
        file_a.write_bytes(saved_a + saved_a[:PACKAGE + 16])
        get_error(s3, bucket, "a", bodies["a"])
    finally:
        file_a.write_bytes(saved_a)
        file_b.write_bytes(saved_b)
    for name, body in bodies.items():
        assert s3.get_object(Bucket=bucket, Key=name)["Body"].read() == body
