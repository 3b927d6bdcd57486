"""The tamper suite: whatever is changed in an object's stored record or data, a GET never answers 200 with wrong or
short bytes.

For objects of every mode (plaintext, SSE-S3, SSE-KMS, SSE-C) and shape (small, kept in the record; one data file;
multipart), each single-field edit of the object record (every value in it, objects set to null, the MAC dropped)
makes GET and a ranged GET answer 500 InternalError, with the reason in the server log; a byte flipped
at the first, a middle and the last byte of each data file makes GET and a ranged GET over the byte fail — an error
status or a body cut off, which the client sees as an error. Ranges elsewhere in the data stay readable. boto3 runs
with response checksum validation off, so the client's own check of a stored CRC cannot hide what the server sent.

An encrypted object's read-affecting record fields are also bound into its encryption (docs/encryption-format.md,
formats 2 and 3, and the part-list commitment): edits made by someone holding the record MAC key — the MAC
recomputed as crates/store/src/record_mac.rs does — still fail.

Records and data files are reached through storage.py, so the suite tampers the same way on both metadata engines.
"""

from __future__ import annotations

import json
from typing import Iterator

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from harness import CofferServer, unique_name
from sse_helpers import DEFAULT_KMS_KEY, MARKER, PACKAGE, MiB, Sse, multipart_put, random_bytes, running_server
from storage import flip_byte, stored_object

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


def objects(modes=MODES, shapes=SHAPES):
    """Parameters for the `stored` fixture: every mode and shape given."""
    return pytest.mark.parametrize("stored", [(mode, shape) for shape in shapes for mode in modes], indirect=True,
                                   ids=lambda p: f"{p[0]}-{p[1]}")


@pytest.fixture(scope="module")
def stored(request, server, s3):
    """One object of a mode and shape: (bucket, key, body, sse)."""
    mode, shape = request.param
    bucket = unique_name("tamper")
    s3.create_bucket(Bucket=bucket)
    sse = sse_of(mode)
    body = random_bytes(SHAPES[shape], seed=len(mode) * 10 + len(shape))
    put(s3, bucket, "obj", body, sse, multipart=shape == "multipart")
    files = stored_object(server, bucket, "obj").data_files()
    assert len(files) == {"small": 0, "file": 1, "multipart": 2}[shape], files
    return bucket, "obj", body, sse


@objects()
def test_every_single_field_edit_of_the_record_is_refused(server, s3, stored):
    bucket, key, body, sse = stored
    stored_record = stored_object(server, bucket, key)
    with stored_record.restored() as record:
        # encryption metadata is opaque JSON: its fields are edited too
        assert (record["meta"]["encryption"] is None) == (sse.mode == "none")
        edits = list(single_field_edits(record))
        assert len(edits) > 40, edits
        ranged = {"Range": f"bytes=1-{min(len(body), 3 * PACKAGE) - 2}"}
        for where, edited in edits:
            stored_record.write(edited)
            for params in ({}, ranged):
                error = get_must_fail(s3, bucket, key, where, **sse.read_args(), **params)
                assert status_of(error) == 500, f"{where}: {error}"
                assert error.response["Error"]["Code"] == "InternalError", where
    assert "record integrity check failed" in server.log()
    assert s3.get_object(Bucket=bucket, Key=key, **sse.read_args())["Body"].read() == body


def stored_to_plaintext(offset: int, encrypted: bool) -> int:
    """The first plaintext byte whose reading needs stored byte `offset` of a part."""
    return max(0, offset - MARKER) // (PACKAGE + TAG) * PACKAGE if encrypted else offset


# Objects kept inside their record have no data file: their data is covered by the record edits.
@objects(shapes=["file", "multipart"])
def test_flipped_bytes_in_data_files_are_never_served(server, s3, stored):
    bucket, key, body, sse = stored
    files = stored_object(server, bucket, key).data_files()
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


def read_affecting_edits(record: dict) -> Iterator[tuple[str, dict, int | None]]:
    """(what, edited record, index of the part edited or None) for each edit of what reading an encrypted object
    depends on: sizes, stored sizes, part numbers, encryption removed, and the final package cut off with every
    size made to agree."""
    def edited(change) -> dict:
        copy = json.loads(json.dumps(record))
        change(copy["meta"], copy)
        return copy

    meta = record["meta"]
    for delta in (1, -1):
        yield f"size{delta:+}", edited(lambda m, r: m.update(size=m["size"] + delta)), None
        for i, _ in enumerate(meta["parts"]):
            yield f"part {i} size{delta:+}", edited(
                lambda m, r: m["parts"][i].update(size=m["parts"][i]["size"] + delta)), i
            yield f"part {i} size and object size{delta:+}", edited(
                lambda m, r: (m["parts"][i].update(size=m["parts"][i]["size"] + delta),
                              m.update(size=m["size"] + delta))), i
            yield f"part {i} stored_size{delta:+}", edited(
                lambda m, r: m["parts"][i].update(stored_size=m["parts"][i]["stored_size"] + delta)), i
    last = meta["parts"][-1]
    cut = last["size"] % PACKAGE or PACKAGE
    if last["size"] > cut:
        def drop_final_package(m, r):
            m["size"] -= cut
            m["parts"][-1]["size"] -= cut
            m["parts"][-1]["stored_size"] -= cut + TAG
        yield "final package cut off, sizes agreeing", edited(drop_final_package), len(meta["parts"]) - 1
    for i, part in enumerate(meta["parts"]):
        part_json = json.loads(json.dumps(part["encryption"]))
        yield f"part {i} number+1", edited(lambda m, r: m["parts"][i].update(number=part["number"] + 1)), i
        yield f"part {i} encryption part+1", edited(
            lambda m, r: m["parts"][i].update(encryption={**part_json, "part": part_json["part"] + 1})), i
        yield f"part {i} number and encryption part+1", edited(
            lambda m, r: m["parts"][i].update(number=part["number"] + 1,
                                              encryption={**part_json, "part": part_json["part"] + 1})), i
        yield f"part {i} read as format 1", edited(
            lambda m, r: m["parts"][i].update(encryption={**part_json, "v": 1})), i
    yield "encryption=null", edited(lambda m, r: m.update(encryption=None)), None

    def unencrypted(m, r):
        m["encryption"] = None
        for part in m["parts"]:
            part["encryption"] = None
    yield "encryption=null, parts too", edited(unencrypted), None


@objects(modes=["sse-s3", "sse-kms", "sse-c"])
def test_read_affecting_edits_with_a_valid_mac_are_refused(server, s3, stored):
    bucket, key, body, sse = stored
    stored_record = stored_object(server, bucket, key)
    with stored_record.restored() as record:
        sizes = [part["size"] for part in record["meta"]["parts"]]
        # The recomputed MAC is the store's: the record re-signed unchanged still reads.
        stored_record.write(record, signed=True)
        assert s3.get_object(Bucket=bucket, Key=key, **sse.read_args())["Body"].read() == body
        for where, edited, part in read_affecting_edits(record):
            stored_record.write(edited, signed=True)
            # The whole object, and ranges in the part edited (reads of other parts return their true bytes).
            start = sum(sizes[:part or 0])
            end = start + (sizes[part] if part is not None else len(body))
            ranges = [f"bytes={start}-{start}", f"bytes={start + 1}-{min(end, start + 3 * PACKAGE) - 2}"]
            for params in [{}] + [{"Range": value} for value in ranges]:
                get_must_fail(s3, bucket, key, where, **sse.read_args(), **params)
    assert s3.get_object(Bucket=bucket, Key=key, **sse.read_args())["Body"].read() == body


def part_list_edits(record: dict) -> Iterator[tuple[str, dict]]:
    """(what, edited record) for each change of a multipart object's part list, every size made to agree: a part
    dropped (with the commitment kept, removed, or removed with the parts relabelled as format 2) or repeated."""
    def edited(change) -> dict:
        copy = json.loads(json.dumps(record))
        change(copy)
        return copy

    def keep(r, indexes):
        for field in ("data_files", "data_checksums"):
            r[field] = [r[field][i] for i in indexes]
        r["meta"]["parts"] = [r["meta"]["parts"][i] for i in indexes]
        r["meta"]["size"] = sum(part["size"] for part in r["meta"]["parts"])

    def uncommitted(r):
        del r["meta"]["encryption"]["part_list"]

    def as_format_2(r):
        uncommitted(r)
        for part in r["meta"]["parts"]:
            part["encryption"]["v"] = 2

    count = len(record["meta"]["parts"])
    for dropped in range(count):
        kept = [i for i in range(count) if i != dropped]
        yield f"part {dropped} dropped", edited(lambda r: keep(r, kept))
        yield f"part {dropped} dropped, commitment removed", edited(lambda r: (keep(r, kept), uncommitted(r)))
        yield f"part {dropped} dropped, commitment removed, parts as format 2", edited(
            lambda r: (keep(r, kept), as_format_2(r)))
    yield "commitment removed", edited(uncommitted)


@objects(modes=["sse-s3", "sse-kms"], shapes=["multipart"])
def test_part_list_edits_with_a_valid_mac_are_refused(server, s3, stored):
    """The part list of an SSE-S3 or SSE-KMS object is committed under its object key (docs/encryption-format.md,
    'Part list'): a record that drops a whole part, even with the MAC recomputed, every size agreeing and the
    commitment removed, does not read. (SSE-C multipart objects are the documented exception: no key at completion.)"""
    bucket, key, body, sse = stored
    stored_record = stored_object(server, bucket, key)
    with stored_record.restored() as record:
        assert len(record["meta"]["parts"]) == 2 and record["meta"]["encryption"]["part_list"]
        assert all(part["encryption"]["v"] == 3 for part in record["meta"]["parts"])
        for where, edited in part_list_edits(record):
            stored_record.write(edited, signed=True)
            for params in [{}, {"Range": "bytes=0-0"}, {"Range": f"bytes={edited['meta']['size'] - 1}-"}]:
                get_must_fail(s3, bucket, key, where, **sse.read_args(), **params)
    assert s3.get_object(Bucket=bucket, Key=key, **sse.read_args())["Body"].read() == body


def test_unencrypted_data_may_not_start_like_encrypted_data(s3):
    bucket = unique_name("marker")
    s3.create_bucket(Bucket=bucket)
    marker = b"\x89COFFER-SSE\r\n\x1a\n\x02"
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket=bucket, Key="k", Body=marker + b"rest")
    assert refused.value.response["Error"]["Code"] == "InvalidArgument"
    # Elsewhere in the data, or encrypted, it is ordinary data.
    s3.put_object(Bucket=bucket, Key="k", Body=b"x" + marker)
    s3.put_object(Bucket=bucket, Key="e", Body=marker, ServerSideEncryption="AES256")
    assert s3.get_object(Bucket=bucket, Key="e")["Body"].read() == marker
