"""The tamper suite: whatever is changed in an object's stored record or data, a GET never answers 200 with wrong or
short bytes.

For objects of every mode (plaintext, SSE-S3, SSE-KMS, SSE-C) and shape (small, kept in the record; one data file;
multipart), each single-field edit of the object record (meta.json: every value in it, objects set to null, the
MAC dropped) makes GET and a ranged GET answer 500 InternalError, with the reason in the server log; a byte flipped
at the first, a middle and the last byte of each data file makes GET and a ranged GET over the byte fail — an error
status or a body cut off, which the client sees as an error. Ranges elsewhere in the data stay readable. boto3 runs
with response checksum validation off, so the client's own check of a stored CRC cannot hide what the server sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from harness import CofferServer, unique_name
from sse_helpers import (DEFAULT_KMS_KEY, PACKAGE, MiB, Sse, flip_byte, multipart_put, object_data_files, object_dir,
                         random_bytes, running_server)

TAG = 16  # AES-GCM tag after each sealed package
MODES = ["plaintext", "sse-s3", "sse-kms", "sse-c"]
SHAPES = {"small": 1000, "file": 2 * MiB + MiB // 2 + 11, "multipart": 5 * MiB + MiB + 3}
PART_SIZE = 5 * MiB


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> CofferServer:
    with running_server(tmp_path_factory) as started:
        yield started


@pytest.fixture(scope="module")
def s3(server):
    """Default boto3 settings except: no retries (500s are asserted) and no client-side response checksum check."""
    return server.s3_client(retries={"max_attempts": 1, "mode": "standard"},
                            response_checksum_validation="when_required")


def sse_of(mode: str) -> Sse:
    return {"plaintext": Sse.none(), "sse-s3": Sse.s3(), "sse-kms": Sse.kms(DEFAULT_KMS_KEY), "sse-c": Sse.c()}[mode]


def put(s3, bucket: str, key: str, body: bytes, sse: Sse, multipart: bool) -> None:
    if not multipart:
        s3.put_object(Bucket=bucket, Key=key, Body=body, **sse.write_args())
        return
    multipart_put(s3, bucket, key, body, sse, PART_SIZE)


def get_must_fail(s3, bucket: str, key: str, what: str, **params) -> Exception:
    """GET fails: an error answer, or a body that breaks off. A complete read of tampered data fails the test."""
    try:
        body = s3.get_object(Bucket=bucket, Key=key, **params)["Body"].read()
    except (ClientError, BotoCoreError) as error:
        return error
    pytest.fail(f"{what}: GET of tampered data answered 200 with {len(body)} bytes")


def status_of(error: Exception) -> int | None:
    return error.response["ResponseMetadata"]["HTTPStatusCode"] if isinstance(error, ClientError) else None


def single_field_edits(value, path: str = "") -> Iterator[tuple[str, object]]:
    """(JSON path, edited record) for every single-field edit of `value`: each scalar changed, each object or
    array set to null, each field that is not null removed."""
    if isinstance(value, dict):
        for name, item in value.items():
            for where, edited in single_field_edits(item, f"{path}/{name}"):
                yield where, {**value, name: edited}
            if item is not None:  # (a null field and an absent one mean the same)
                yield f"{path}/{name}=null", {**value, name: None}
                yield f"{path}/{name} removed", {k: v for k, v in value.items() if k != name}
    elif isinstance(value, list):
        for index, item in enumerate(value):
            for where, edited in single_field_edits(item, f"{path}/{index}"):
                yield where, value[:index] + [edited] + value[index + 1:]
    elif isinstance(value, bool):
        yield path, not value
    elif isinstance(value, int):
        yield path, value + 1
        if value > 0:
            yield f"{path}-1", value - 1
    elif isinstance(value, str):
        yield path, value[:-1] + ("A" if value[-1:] != "A" else "B") if value else "A"


@pytest.fixture(scope="module", params=[(mode, shape) for shape in SHAPES for mode in MODES],
                ids=lambda p: f"{p[0]}-{p[1]}")
def stored(request, server, s3):
    """One object of a mode and shape: (bucket, key, body, sse)."""
    mode, shape = request.param
    bucket = unique_name("tamper")
    s3.create_bucket(Bucket=bucket)
    sse = sse_of(mode)
    body = random_bytes(SHAPES[shape], seed=len(mode) * 10 + len(shape))
    put(s3, bucket, "obj", body, sse, multipart=shape == "multipart")
    files = object_data_files(server, bucket, "obj")
    assert len(files) == {"small": 0, "file": 1, "multipart": 2}[shape], files
    return bucket, "obj", body, sse


def test_every_single_field_edit_of_the_record_is_refused(server, s3, stored):
    bucket, key, body, sse = stored
    record_path: Path = object_dir(server, bucket, key) / "meta.json"
    original = record_path.read_bytes()
    record = json.loads(original)
    # encryption metadata is opaque JSON: its fields are edited too
    assert (record["meta"]["encryption"] is None) == (sse.mode == "none")
    edits = list(single_field_edits(record))
    assert len(edits) > 40, edits
    ranged = {"Range": f"bytes=1-{min(len(body), 3 * PACKAGE) - 2}"}
    try:
        for where, edited in edits:
            record_path.write_text(json.dumps(edited))
            for params in ({}, ranged):
                error = get_must_fail(s3, bucket, key, where, **sse.read_args(), **params)
                assert status_of(error) == 500, f"{where}: {error}"
                assert error.response["Error"]["Code"] == "InternalError", where
    finally:
        record_path.write_bytes(original)
    assert "record integrity check failed" in server.log()
    assert s3.get_object(Bucket=bucket, Key=key, **sse.read_args())["Body"].read() == body


def stored_to_plaintext(offset: int, encrypted: bool) -> int:
    """The first plaintext byte whose reading needs stored byte `offset` of a part."""
    return offset // (PACKAGE + TAG) * PACKAGE if encrypted else offset


def test_flipped_bytes_in_data_files_are_never_served(server, s3, stored):
    bucket, key, body, sse = stored
    files = object_data_files(server, bucket, key)
    if not files:
        pytest.skip("kept in the record: its data is covered by the record edits")
    encrypted = sse.mode != "none"
    read = sse.read_args()
    for index, data_file in enumerate(files):
        part_start = index * PART_SIZE
        part_len = min(PART_SIZE, len(body) - part_start)
        size = data_file.stat().st_size
        for offset in (0, size // 2, size - 1):
            what = f"part {index + 1}, stored byte {offset} of {size}"
            original = flip_byte(data_file, offset)
            try:
                get_must_fail(s3, bucket, key, what, **read)
                first = part_start + min(stored_to_plaintext(offset, encrypted), part_len - 1)
                get_must_fail(s3, bucket, key, what + " (range)", Range=f"bytes={first}-{first}", **read)
                # a range of the object far from the flipped byte still reads
                other = 0 if first >= MiB + PACKAGE else len(body) - 10
                if abs(other - first) > MiB + PACKAGE:
                    reply = s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={other}-{other + 9}", **read)
                    assert reply["Body"].read() == body[other:other + 10], what
            finally:
                data_file.write_bytes(original)
    assert s3.get_object(Bucket=bucket, Key=key, **read)["Body"].read() == body
