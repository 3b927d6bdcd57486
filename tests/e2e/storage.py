"""What a server keeps in its data directory, read and changed the same way whichever metadata engine it runs.

The e2e suite runs on both engines (the SQL one by default, the directory one with `COFFER_E2E_METADATA=directory`).
Tests that look at or damage stored records and data go through `storage(server)` and `stored_object(server, bucket,
key)`, never through the paths of one engine:

- directory engine (crates/store/src/layout.rs): every record is a JSON file under DATA/buckets/ — an object's is
  `<bucket>/objects/<sha256(key)>/meta.json` with its data files beside it, an upload's `<bucket>/uploads/<id>/`
  holds `upload.json`, `part-NNNNN.json` and the parts' data files — and jobs are files in DATA/.coffer/jobs/.
- SQL engine (crates/store/src/sql/mod.rs): the same records are rows of tables `buckets`, `objects`, `uploads`,
  `parts` (jobs in `jobs`), in DATA/coffer.sqlite or in the server's PostgreSQL database, and data files are
  DATA/data/<first two hex digits>/data-<id>. SQLite is read and written here with the stdlib `sqlite3` (the database
  is in WAL mode, so while the server runs), PostgreSQL with psycopg; the server reads rows afresh on every request, so
  an edited row is what the next request sees.
  With the S3 data engine (`COFFER_E2E_DATA=s3`, the `data_location` row says `s3://<bucket>/<prefix>`), data
  files are objects `<prefix>data-<id>` in a bucket of the harness's SeaweedFS cluster: they are `RemoteDataFile`s,
  read and written through boto3 with the methods of `Path` the tests use (read_bytes, write_bytes, unlink,
  exists, stat().st_size, name). Files released by an overwrite or delete stay until their grace period ends; they
  are in `released_data_files` and count as neither referenced nor leftover.

Records carry a MAC over their "place" (the record's path under DATA/buckets/, or `db/objects/<bucket>/<key>` in the
SQL engine) and their canonical JSON: `Storage.signed` recomputes it as crates/store/src/record_mac.rs does, for
tests that edit a record as someone holding the MAC key could. Both engines stage writes in DATA/.coffer/tmp.

- `StoredObject`   one object's record (read, written back as is or re-signed, restored), data files, inline data.
- `Storage`        the whole directory: data, temp and unreferenced files, a snapshot of everything stored for the
                   buckets, job records, whether an upload is stored, a search of every file for given bytes, and
                   the leftovers a crash at the worst moment leaves (planted for the garbage collection tests).
- `flip_byte`      damages one byte of a file (local or remote).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator

import psycopg

from harness import CofferServer

DATABASE_FILE = "coffer.sqlite"
# Separates record MACs from any other use of their key (crates/store/src/record_mac.rs DOMAIN).
MAC_DOMAIN = b"coffer record mac v1\0"
SEARCH_WINDOW = 4 << 20


def storage(server: CofferServer) -> "Storage":
    """The stored state of `server`'s data directory, by the engine that wrote it: a server given a PostgreSQL
    database keeps its rows there; otherwise the SQL engine creates DATA/coffer.sqlite when it opens, and the
    directory engine never does."""
    postgres_url = server.metadata_url()
    if postgres_url:
        return SqlStorage(server.data_dir, PostgresRows(postgres_url), server.data_s3_client)
    if (server.data_dir / DATABASE_FILE).exists():
        return SqlStorage(server.data_dir, SqliteRows(server.data_dir / DATABASE_FILE), server.data_s3_client)
    return DirectoryStorage(server.data_dir)


def stored_object(server: CofferServer, bucket: str, key: str) -> "StoredObject":
    return storage(server).object(bucket, key)


def flip_byte(path: "Path | RemoteDataFile", offset: int) -> bytes:
    """XOR one byte of a file; returns the file's original content (to restore it)."""
    original = path.read_bytes()
    path.write_bytes(original[:offset] + bytes([original[offset] ^ 0x01]) + original[offset + 1:])
    return original


@dataclass(frozen=True)
class RemoteDataFile:
    """A data file of the S3 data engine: object `key` of `bucket`, with the parts of `Path`'s interface the tests
    use."""

    bucket: str
    key: str
    client: Any = field(compare=False, hash=False, repr=False)

    @property
    def name(self) -> str:
        return self.key.rsplit("/", 1)[-1]

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def read_bytes(self) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"].read()

    def write_bytes(self, data: bytes) -> int:
        self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data)
        return len(data)

    def unlink(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key)

    def exists(self) -> bool:
        import botocore.exceptions

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key)
            return True
        except botocore.exceptions.ClientError as error:
            if error.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def stat(self) -> SimpleNamespace:
        return SimpleNamespace(st_size=self.client.head_object(Bucket=self.bucket, Key=self.key)["ContentLength"])

    def chunks(self, size: int) -> Iterator[bytes]:
        """The content in pieces of `size` bytes (one streamed GET)."""
        body = self.client.get_object(Bucket=self.bucket, Key=self.key)["Body"]
        while chunk := body.read(size):
            yield chunk


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class StoredObject:
    """One object's committed record and data, as its engine stores them."""

    storage: "Storage"
    bucket: str
    key: str

    @property
    def place(self) -> str:
        """What the record's MAC binds it to."""
        return self.storage.object_place(self.bucket, self.key)

    def text(self) -> str:
        """The record exactly as stored (to put back with `write_text`)."""
        text = self.storage.read_object_text(self.bucket, self.key)
        assert text is not None, f"no stored record of {self.bucket}/{self.key}"
        return text

    def record(self) -> dict:
        """`{format_version, meta: {..., parts, encryption}, data_files, inline_data, data_checksums, mac}`."""
        return json.loads(self.text())

    def write_text(self, text: str) -> None:
        self.storage.write_object_text(self.bucket, self.key, text)

    def write(self, record: dict, signed: bool = False) -> None:
        """Stores `record` as it is (its MAC, if any, unchanged) or, with `signed`, with its MAC recomputed."""
        self.write_text(self.storage.signed(self.place, record) if signed else json.dumps(record))

    @contextlib.contextmanager
    def restored(self) -> Iterator[dict]:
        """The record, put back exactly as it was when the block ends, whatever the block wrote."""
        original = self.text()
        try:
            yield json.loads(original)
        finally:
            self.write_text(original)

    def data_files(self) -> list[Path]:
        """The stored bytes of the object's parts, in part order (the record's `data_files`)."""
        return [self.storage.data_file_path(self.bucket, self.key, name) for name in self.record()["data_files"]]

    def inline_data(self) -> bytes | None:
        """The stored bytes of a small object kept in its record (`inline_data`), or None if it has data files."""
        inline = self.record().get("inline_data")
        return None if inline is None else base64.b64decode(inline)

    def set_inline_data(self, data: bytes) -> None:
        """Replaces the record's `inline_data`, its MAC left as it was."""
        record = self.record()
        record["inline_data"] = base64.b64encode(data).decode()
        self.write(record)


class Storage:
    """A data directory's records and files; `DirectoryStorage` and `SqlStorage` say where each engine keeps them."""

    def __init__(self, data_dir: Path):
        self.data_dir = data_dir

    def object(self, bucket: str, key: str) -> StoredObject:
        return StoredObject(self, bucket, key)

    # ---- where each engine keeps things (subclasses) -----------------------------------------------------------
    def object_place(self, bucket: str, key: str) -> str:
        raise NotImplementedError

    def read_object_text(self, bucket: str, key: str) -> str | None:
        raise NotImplementedError

    def write_object_text(self, bucket: str, key: str, text: str) -> None:
        raise NotImplementedError

    def data_file_path(self, bucket: str, key: str, name: str) -> Path:
        raise NotImplementedError

    def data_files(self) -> list[Path]:
        """Every data file (`data-<id>`), referenced or not."""
        raise NotImplementedError

    def referenced_data_files(self) -> set[Path]:
        """The data files an object or part record names."""
        raise NotImplementedError

    def snapshot(self) -> dict[str, str]:
        """Every record of the buckets, objects, uploads and parts and every data file, with the SHA-256 of its
        content: two snapshots are equal when nothing stored for the buckets changed (jobs are not in it)."""
        raise NotImplementedError

    def job_records(self) -> list[dict]:
        raise NotImplementedError

    def upload_stored(self, bucket: str, upload_id: str) -> bool:
        """True while anything of the multipart upload is stored (its record, its parts)."""
        raise NotImplementedError

    def plant_crash_leftovers(self, bucket: str, committed_key: str, upload_id: str) -> list[Path]:
        """Empty paths where a crash at the worst moment leaves a file no record references, each in a directory
        that exists; the caller writes them."""
        raise NotImplementedError

    # ---- the same in both engines ------------------------------------------------------------------------------
    def mac_key(self) -> bytes:
        return (self.data_dir / ".coffer" / "record-mac.key").read_bytes()

    def signed(self, place: str, record: dict) -> str:
        """`record` with its MAC recomputed as the store does: HMAC-SHA256 under DATA/.coffer/record-mac.key of the
        domain, the place, a zero byte and the record without `mac` as canonical JSON."""
        unsigned = {name: value for name, value in record.items() if name != "mac"}
        canonical = json.dumps(unsigned, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
        mac = hmac.new(self.mac_key(), MAC_DOMAIN + place.encode() + b"\0" + canonical, hashlib.sha256).hexdigest()
        return json.dumps({**unsigned, "mac": mac})

    def temp_files(self) -> list[Path]:
        """What is staged in DATA/.coffer/tmp (both engines stage there)."""
        tmp = self.data_dir / ".coffer" / "tmp"
        return sorted(tmp.rglob("*")) if tmp.exists() else []

    def all_files(self) -> list[Path]:
        return sorted(path for path in self.data_dir.rglob("*") if path.is_file())

    def unreferenced_files(self) -> list[Path]:
        """Files no record references: data files no object or part record names, and anything in the temp
        directory."""
        referenced = self.referenced_data_files()
        return [path for path in self.temp_files() if path.is_file()] + \
            [path for path in self.data_files() if path not in referenced]

    def remote_data_files(self) -> list["RemoteDataFile"]:
        """Every data file kept outside the data directory (the S3 data engine's)."""
        return []

    def wait_for_released_deletion(self, timeout: float = 60) -> None:
        """Data files no record names are removed at once here."""

    def files_containing(self, needles: Iterable[bytes]) -> list[tuple[str, bytes]]:
        """Every (place, needle) where what is stored holds the needle, as it is or base64-encoded (records keep
        small objects' data as base64 `inline_data`). Places are the files under DATA (searching the files rather
        than the current records also finds what SQLite keeps of older rows) and, for a PostgreSQL database, its
        current rows; remote data files are s3://bucket/key. Files are read in overlapping windows so big data files
        never sit in memory whole."""
        forms = {needle: [needle, *base64_forms(needle)] for needle in needles if needle}
        overlap = max(len(form) for variants in forms.values() for form in variants) - 1

        found = []
        for place, windows in self.stored_contents():
            tail = b""
            hits = set()
            for chunk in windows:
                window = tail + chunk
                hits.update(needle for needle, variants in forms.items() if any(v in window for v in variants))
                tail = window[-overlap:] if overlap else b""
            found += [(place, needle) for needle in forms if needle in hits]
        return found

    def stored_contents(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        """What is stored, by place: each file under DATA (path relative to DATA) and each remote data file, in
        windows."""
        for path in self.all_files():
            yield str(path.relative_to(self.data_dir)), file_windows(path)
        for remote in self.remote_data_files():
            yield str(remote), remote.chunks(SEARCH_WINDOW)


def file_windows(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(SEARCH_WINDOW):
            yield chunk


def base64_forms(needle: bytes) -> list[bytes]:
    """What any base64 text that encodes `needle` contains, at each of the three alignments the needle can start
    at: the characters made of the needle's bits alone."""
    forms = []
    for shift in range(3):
        encoded = base64.b64encode(bytes(shift) + needle)
        first = -(-8 * shift // 6)
        forms.append(encoded[first:8 * (shift + len(needle)) // 6])
    return forms


class DirectoryStorage(Storage):
    @property
    def buckets_dir(self) -> Path:
        return self.data_dir / "buckets"

    def object_dir(self, bucket: str, key: str) -> Path:
        """DATA/buckets/<bucket>/objects/<sha256(key)> (crates/store/src/layout.rs)."""
        return self.buckets_dir / bucket / "objects" / hashlib.sha256(key.encode()).hexdigest()

    def object_place(self, bucket: str, key: str) -> str:
        return (self.object_dir(bucket, key) / "meta.json").relative_to(self.buckets_dir).as_posix()

    def read_object_text(self, bucket: str, key: str) -> str | None:
        path = self.object_dir(bucket, key) / "meta.json"
        return path.read_text() if path.exists() else None

    def write_object_text(self, bucket: str, key: str, text: str) -> None:
        (self.object_dir(bucket, key) / "meta.json").write_text(text)

    def data_file_path(self, bucket: str, key: str, name: str) -> Path:
        return self.object_dir(bucket, key) / name

    def data_files(self) -> list[Path]:
        return sorted(self.buckets_dir.glob("*/objects/*/data-*")) + sorted(self.buckets_dir.glob("*/uploads/*/data-*"))

    def referenced_data_files(self) -> set[Path]:
        named = set()
        for record in self.buckets_dir.glob("*/objects/*/meta.json"):
            named |= {record.parent / name for name in json.loads(record.read_text())["data_files"]}
        for part in self.buckets_dir.glob("*/uploads/*/part-*.json"):
            named.add(part.parent / json.loads(part.read_text())["data_file"])
        return named

    def unreferenced_files(self) -> list[Path]:
        """Also object directories without a record: a commit that never happened leaves one, and the garbage
        collection removes it whole."""
        recordless = [directory for directory in sorted(self.buckets_dir.glob("*/objects/*"))
                      if not (directory / "meta.json").exists()]
        return super().unreferenced_files() + recordless

    def snapshot(self) -> dict[str, str]:
        return {str(path.relative_to(self.buckets_dir)): digest(path.read_bytes())
                for path in sorted(self.buckets_dir.rglob("*")) if path.is_file()}

    def job_records(self) -> list[dict]:
        return [json.loads(path.read_text()) for path in sorted((self.data_dir / ".coffer" / "jobs").glob("*.json"))]

    def upload_dir(self, bucket: str, upload_id: str) -> Path:
        return self.buckets_dir / bucket / "uploads" / upload_id

    def upload_stored(self, bucket: str, upload_id: str) -> bool:
        return self.upload_dir(bucket, upload_id).exists()

    def plant_crash_leftovers(self, bucket: str, committed_key: str, upload_id: str) -> list[Path]:
        """A data file beside a committed record, an object directory with data and no record (a first commit
        that never happened), part data without its part record, a staged upload in the temp directory."""
        uncommitted = self.object_dir(bucket, "crashed-before-commit")
        uncommitted.mkdir(mode=0o700)
        return [self.object_dir(bucket, committed_key) / "data-00aa11", uncommitted / "data-00bb22",
                self.upload_dir(bucket, upload_id) / "data-00cc33", self.data_dir / ".coffer" / "tmp" / "stage-00dd44"]


class SqliteRows:
    """Rows of DATA/coffer.sqlite. A connection waits while the server writes (it holds SQLite's one write lock only
    briefly)."""

    def __init__(self, path: Path):
        self.path = path

    @contextlib.contextmanager
    def transaction(self, writes: bool = False) -> Iterator[sqlite3.Connection]:
        """One view of all tables; one that `writes` takes the write lock at once (`BEGIN IMMEDIATE`)."""
        connection = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            connection.execute("BEGIN IMMEDIATE" if writes else "BEGIN")
            yield connection
            connection.execute("COMMIT")
        finally:
            connection.close()


class PostgresRows:
    """Rows of the server's PostgreSQL database. Queries are written with SQLite's `?` parameters (translated to
    psycopg's `%s`: no query here holds a literal `?` or `%`)."""

    def __init__(self, url: str):
        self.url = url

    class _Connection:
        def __init__(self, connection: psycopg.Connection):
            self.connection = connection

        def execute(self, query: str, params: tuple = ()) -> psycopg.Cursor:
            return self.connection.execute(query.replace("?", "%s"), params)

    @contextlib.contextmanager
    def transaction(self, writes: bool = False) -> Iterator["PostgresRows._Connection"]:
        """One view of all tables (PostgreSQL's row locks order the writes)."""
        with psycopg.connect(self.url) as connection:
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one view of all tables
            yield PostgresRows._Connection(connection)


class SqlStorage(Storage):
    def __init__(self, data_dir: Path, database: SqliteRows | PostgresRows,
                 data_s3_client: Callable[[], Any] | None = None):
        """`data_s3_client` makes a boto3 client for the data bucket of the S3 data engine."""
        super().__init__(data_dir)
        self.database = database
        self._data_s3_client = data_s3_client

    def rows(self, query: str, *params) -> list[tuple]:
        with self.database.transaction() as connection:
            return connection.execute(query, params).fetchall()

    def stored_contents(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        """Also, with PostgreSQL, every current row holding a record (the database's files are the database's: its
        old row versions and WAL are outside what Coffer erases, see docs/rewrap.md)."""
        yield from super().stored_contents()
        if isinstance(self.database, PostgresRows):
            for table in ("buckets", "objects", "versions", "uploads", "parts", "jobs"):
                for (record,) in self.rows(f"SELECT record FROM {table}"):
                    yield f"postgres table {table}", iter([record.encode()])

    def object_place(self, bucket: str, key: str) -> str:
        return f"db/objects/{bucket}/{key}"

    def read_object_text(self, bucket: str, key: str) -> str | None:
        # Keys are stored as bytes (BLOB): they may hold NUL, and sort as S3 lists them.
        found = self.rows("SELECT record FROM objects WHERE bucket = ? AND key = ?", bucket, key.encode())
        return found[0][0] if found else None

    def version_record(self, bucket: str, key: str, version: str) -> dict:
        """The record of one version of `key`: its `objects` row while it is current, else its `versions` row."""
        found = [row for table in ("objects", "versions") for row in self.rows(
            f"SELECT record FROM {table} WHERE bucket = ? AND key = ? AND version_id = ?", bucket, key.encode(), version)]
        assert len(found) == 1 and found[0][0], f"{bucket}/{key} version {version}: {len(found)} rows"
        return json.loads(found[0][0])

    def write_object_text(self, bucket: str, key: str, text: str) -> None:
        with self.database.transaction(writes=True) as connection:
            changed = connection.execute("UPDATE objects SET record = ? WHERE bucket = ? AND key = ?",
                                         (text, bucket, key.encode())).rowcount
        assert changed == 1, f"no object row {bucket}/{key}"

    @property
    def data_root(self) -> Path:
        return self.data_dir / "data"

    def data_bucket(self) -> tuple[str, str] | None:
        """(bucket, prefix) of the S3 data engine, or None when the data is in the data directory."""
        try:
            found = self.rows("SELECT location FROM data_location")
        except (sqlite3.OperationalError, psycopg.errors.UndefinedTable):  # a database from before the table
            return None
        if not found or not found[0][0].startswith("s3://"):
            return None
        bucket, _, prefix = found[0][0][len("s3://"):].partition("/")
        return bucket, prefix

    def s3_data_client(self):
        assert self._data_s3_client is not None, "the data is on S3, but no client for its bucket was given"
        return self._data_s3_client()

    def data_file_at(self, name: str) -> "Path | RemoteDataFile":
        """DATA/data/<first two hex digits of the id>/data-<id> (crates/store/src/data_dir.rs), or the object
        <prefix>data-<id> of the data bucket (crates/store/src/s3_data.rs)."""
        remote = self.data_bucket()
        if remote is not None:
            bucket, prefix = remote
            return RemoteDataFile(bucket, prefix + name, self.s3_data_client())
        return self.data_root / name[len("data-"):len("data-") + 2] / name

    def data_file_path(self, bucket: str, key: str, name: str) -> "Path | RemoteDataFile":
        return self.data_file_at(name)

    def data_files(self) -> list:
        remote = self.data_bucket()
        if remote is None:
            return sorted(self.data_root.glob("*/data-*"))
        bucket, prefix = remote
        client = self.s3_data_client()
        keys = [item["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
                for item in page.get("Contents", [])]
        return [RemoteDataFile(bucket, key, client) for key in sorted(keys)
                if key[len(prefix):].startswith("data-") and "/" not in key[len(prefix):]]

    def remote_data_files(self) -> list[RemoteDataFile]:
        return self.data_files() if self.data_bucket() is not None else []

    def released_data_files(self) -> set:
        """Remote data files an overwrite or delete released, waiting for their grace period to end."""
        if self.data_bucket() is None:
            return set()
        return {self.data_file_at(name) for (name,) in self.rows("SELECT name FROM released_data_files")}

    def wait_for_released_deletion(self, timeout: float = 60) -> None:
        """Until the grace period of every released remote data file has ended and it is deleted."""
        deadline = time.monotonic() + timeout
        while self.released_data_files():
            assert time.monotonic() < deadline, f"released data files still there after {timeout}s"
            time.sleep(0.2)

    def unreferenced_files(self) -> list:
        released = self.released_data_files()
        return [path for path in super().unreferenced_files() if path not in released]

    def referenced_data_files(self) -> set:
        named = set()
        for (text,) in self.rows("SELECT record FROM objects"):
            named |= {self.data_file_at(name) for name in json.loads(text)["data_files"]}
        for (text,) in self.rows("SELECT record FROM parts"):
            named.add(self.data_file_at(json.loads(text)["data_file"]))
        return named

    def snapshot(self) -> dict[str, str]:
        def text(column: str) -> str:  # PostgreSQL joins bytes and numbers to text only when told to
            return f"CAST({column} AS TEXT)"
        queries = {"buckets": "SELECT name, record FROM buckets",
                   "objects": f"SELECT bucket || '/' || {text('key')}, {text('size')} || ' ' || etag || ' ' || "
                              f"{text('modified')} || ' ' || record FROM objects",
                   "uploads": f"SELECT bucket || '/' || upload_id, {text('key')} || ' ' || {text('initiated')} || ' ' "
                              "|| record FROM uploads",
                   "parts": f"SELECT bucket || '/' || upload_id || '/' || {text('number')}, record FROM parts",
                   "data_files": "SELECT name, name FROM data_files"}
        state = {}
        with self.database.transaction() as connection:
            for table, query in queries.items():
                state.update({f"{table}: {name}": digest(value.encode())
                              for name, value in connection.execute(query).fetchall()})
        state.update({str(path.relative_to(self.data_dir)) if isinstance(path, Path) else str(path):
                      digest(path.read_bytes()) for path in self.data_files()})
        return state

    def job_records(self) -> list[dict]:
        return [json.loads(text) for (text,) in self.rows("SELECT record FROM jobs ORDER BY id")]

    def upload_stored(self, bucket: str, upload_id: str) -> bool:
        return bool(self.rows("SELECT 1 FROM uploads WHERE bucket = ? AND upload_id = ? UNION ALL "
                              "SELECT 1 FROM parts WHERE bucket = ? AND upload_id = ?",
                              bucket, upload_id, bucket, upload_id))

    def plant_crash_leftovers(self, bucket: str, committed_key: str, upload_id: str) -> list[Path]:
        """Data files put in place before the row naming them committed (an object's new version, a first PUT, a
        part: in this engine they all look the same, a file no row names), and a staged upload in the temp
        directory."""
        planted = [self.data_file_at(name) for name in ("data-00aa11", "data-00bb22", "data-00cc33")]
        for path in planted:
            if isinstance(path, Path):
                path.parent.mkdir(mode=0o700, exist_ok=True)
        return planted + [self.data_dir / ".coffer" / "tmp" / "stage-00dd44"]
