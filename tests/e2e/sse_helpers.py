"""Helpers for the server-side encryption end-to-end tests (tests/e2e/test_sse_*.py).

- `CustomerKey`      an SSE-C key and the arguments each client takes it as (aws s3 cp, aws s3api, boto3).
- `Sse`              one encryption choice (none, SSE-S3, SSE-KMS with key/context/bucket key, SSE-C): the boto3
                     arguments for writes, reads and copy sources, and `check_echo` for the response headers.
- `expect_error`, `refused_write`   error assertions that also check nothing was stored and no temp file stayed.
- `extra_headers`    add, replace or drop raw request headers of one boto3 operation (a `before-sign` hook).
- `kms_admin`, `create_kms_key`, `vault_store`   the KMS admin API through awscurl; an OpenBao store's settings.
- servers            `running_server` (one per module), `running_server_on_all_interfaces` + `client_via` (to
                     connect from a non-loopback address), `no_retry_client` (asserting 5xx answers).

Everything drives the real server through the real clients from .venv with their default settings.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import json
import random
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import pytest
from botocore.exceptions import ClientError

from harness import ROOT, CofferFactory, CofferServer, OpenBao, awscurl_status, free_port, unique_name
from storage import storage

KiB = 1 << 10
MiB = 1 << 20
PACKAGE = 64 * KiB  # plaintext bytes per sealed package (crates/sse PACKAGE_SIZE)
MARKER = 16  # bytes of the format marker before an encrypted part's packages (crates/sse ENCRYPTED_DATA_MARKER)
DEFAULT_KMS_KEY = "coffer-default"
ADMIN_KMS = "/coffer/admin/v3/kms"


# ---- servers ---------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def running_server(tmp_path_factory, **kwargs) -> Iterator[CofferServer]:
    """A server for one module (module-scoped fixtures): started with the factory's arguments, stopped (exit 0
    checked) when the module is done."""
    factory = CofferFactory(tmp_path_factory)
    try:
        yield factory(**kwargs)
    finally:
        factory.stop_all()


class AllInterfacesServer(CofferServer):
    """A server listening on 0.0.0.0, so a client can reach it through a non-loopback address of this machine."""

    def command(self) -> list[str]:
        args = super().command()
        args[args.index("--address") + 1] = f"0.0.0.0:{self.port}"
        return args


def non_loopback_address() -> str | None:
    """This machine's address on its outbound interface (no packet is sent), or None when it has only loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if ipaddress.ip_address(address).is_loopback else address


@contextlib.contextmanager
def running_server_on_all_interfaces(tmp_path_factory, args: Iterable[str] = ()) -> Iterator[CofferServer]:
    sandbox = tmp_path_factory.mktemp("coffer")
    server = AllInterfacesServer(sandbox=sandbox, data_dir=sandbox / "data", port=free_port(), root=ROOT,
                                 extra_args=list(args))
    server.start()
    try:
        yield server
    finally:
        server.stop_and_check()


def client_via(server: CofferServer, host: str):
    """A default boto3 client for `server` that connects to `host` instead of 127.0.0.1."""
    import boto3

    return boto3.session.Session().client(
        "s3", endpoint_url=f"http://{host}:{server.port}", region_name="us-east-1",
        aws_access_key_id=server.root.access_key, aws_secret_access_key=server.root.secret_key)


def no_retry_client(server: CofferServer):
    """A boto3 client that does not retry 5xx answers (the request itself is sent with default settings), for
    asserting 500/503 answers without botocore's backoff in between."""
    return server.s3_client(retries={"max_attempts": 1, "mode": "standard"})


# ---- SSE-C keys ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CustomerKey:
    """A 32-byte SSE-C key made of printable characters, so the aws CLI can take it raw on its command line."""

    raw: bytes

    @classmethod
    def generate(cls) -> "CustomerKey":
        return cls(secrets.token_hex(16).encode())

    def __repr__(self) -> str:  # keeps the key out of assertion messages
        return f"CustomerKey(md5={self.md5_b64})"

    @property
    def text(self) -> str:
        return self.raw.decode()

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode()

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(hashlib.md5(self.raw).digest()).decode()

    def boto(self, prefix: str = "SSECustomer") -> dict:
        """boto3 parameters; botocore base64-encodes the raw key and adds its MD5 itself."""
        return {f"{prefix}Algorithm": "AES256", f"{prefix}Key": self.raw}

    def boto_copy_source(self) -> dict:
        return self.boto("CopySourceSSECustomer")

    def cli_cp(self) -> list[str]:
        """`aws s3 cp` flags (raw key; the CLI computes base64 and MD5)."""
        return ["--sse-c", "AES256", "--sse-c-key", self.text]

    def cli_s3api(self) -> list[str]:
        """`aws s3api` flags (raw key; botocore computes base64 and MD5)."""
        return ["--sse-customer-algorithm", "AES256", "--sse-customer-key", self.text]

    def headers(self) -> dict[str, str]:
        """The raw request headers, for awscurl or header hooks."""
        return {"x-amz-server-side-encryption-customer-algorithm": "AES256",
                "x-amz-server-side-encryption-customer-key": self.b64,
                "x-amz-server-side-encryption-customer-key-MD5": self.md5_b64}


def raw_customer_params(algorithm: str, key_b64: str, md5_b64: str, prefix: str = "SSECustomer") -> dict:
    """boto3 parameters sent verbatim: with the MD5 given, botocore leaves key and MD5 alone."""
    return {f"{prefix}Algorithm": algorithm, f"{prefix}Key": key_b64, f"{prefix}KeyMD5": md5_b64}


def encryption_context(pairs: dict[str, str]) -> str:
    """`x-amz-server-side-encryption-context`: base64 of a JSON object of string pairs."""
    return base64.b64encode(json.dumps(pairs).encode()).decode()


# ---- one encryption choice ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sse:
    """How an object is (to be) encrypted, as the client asks for it."""

    mode: str  # "none" | "sse-s3" | "sse-kms" | "sse-c"
    kms_key_id: str | None = None  # as the client names it; None with sse-kms: the server's default key
    context: str | None = None
    bucket_key: bool | None = None
    customer: CustomerKey | None = None

    @classmethod
    def none(cls) -> "Sse":
        return cls("none")

    @classmethod
    def s3(cls) -> "Sse":
        return cls("sse-s3")

    @classmethod
    def kms(cls, key_id: str | None = None, context: str | None = None, bucket_key: bool | None = None) -> "Sse":
        return cls("sse-kms", kms_key_id=key_id, context=context, bucket_key=bucket_key)

    @classmethod
    def c(cls, key: CustomerKey | None = None) -> "Sse":
        return cls("sse-c", customer=key or CustomerKey.generate())

    def __str__(self) -> str:
        return self.mode

    def write_args(self) -> dict:
        """PutObject / CreateMultipartUpload / CopyObject destination parameters."""
        if self.mode == "sse-s3":
            return {"ServerSideEncryption": "AES256"}
        if self.mode == "sse-kms":
            args = {"ServerSideEncryption": "aws:kms"}
            if self.kms_key_id is not None:
                args["SSEKMSKeyId"] = self.kms_key_id
            if self.context is not None:
                args["SSEKMSEncryptionContext"] = self.context
            if self.bucket_key is not None:
                args["BucketKeyEnabled"] = self.bucket_key
            return args
        if self.mode == "sse-c":
            return self.customer.boto()
        return {}

    def read_args(self) -> dict:
        """GetObject / HeadObject / UploadPart parameters: only SSE-C objects need any."""
        return self.customer.boto() if self.mode == "sse-c" else {}

    def copy_source_args(self) -> dict:
        return self.customer.boto_copy_source() if self.mode == "sse-c" else {}

    def check_echo(self, reply: dict, *, context_echoed: bool = False) -> None:
        """The response's SSE headers say exactly this encryption, and never carry an SSE-C key.

        `context_echoed`: PutObject, CopyObject and CreateMultipartUpload answers echo the encryption context.
        """
        headers = reply["ResponseMetadata"]["HTTPHeaders"]
        assert "x-amz-server-side-encryption-customer-key" not in headers, headers
        if self.mode == "none":
            assert "ServerSideEncryption" not in reply, reply
            assert "SSEKMSKeyId" not in reply and "SSECustomerAlgorithm" not in reply, reply
        elif self.mode == "sse-s3":
            assert reply.get("ServerSideEncryption") == "AES256", headers
            assert "SSEKMSKeyId" not in reply and "SSECustomerAlgorithm" not in reply, reply
        elif self.mode == "sse-kms":
            assert reply.get("ServerSideEncryption") == "aws:kms", headers
            assert reply.get("SSEKMSKeyId") == (self.kms_key_id or DEFAULT_KMS_KEY), headers
            assert "SSECustomerAlgorithm" not in reply, reply
            if context_echoed and self.context is not None:
                assert reply.get("SSEKMSEncryptionContext") == self.context, headers
            if self.bucket_key:
                assert reply.get("BucketKeyEnabled") is True, headers
        else:
            assert reply.get("SSECustomerAlgorithm") == "AES256", headers
            assert reply.get("SSECustomerKeyMD5") == self.customer.md5_b64, headers
            assert "ServerSideEncryption" not in reply, reply
            assert not any(self.customer.b64 in value or self.customer.text in value for value in headers.values()), \
                "an SSE-C key came back in a response header"


# ---- errors ----------------------------------------------------------------------------------------------------

def expect_error(call: Callable[[], object], status: int, code: str | None = None,
                 message: str | None = None) -> dict:
    """`call` must fail with this HTTP status (and S3 error code, and a message containing `message`).
    HEAD answers have no body, so pass no code for them. Returns the error response."""
    with pytest.raises(ClientError) as raised:
        call()
    response = raised.value.response
    got = (response["ResponseMetadata"]["HTTPStatusCode"], response.get("Error", {}).get("Code"))
    assert got[0] == status, f"expected HTTP {status} {code or ''}, got {got}: {response.get('Error')}"
    if code is not None:
        assert got[1] == code, f"expected {status} {code}, got {got}: {response.get('Error')}"
    if message is not None:
        assert message in response["Error"].get("Message", ""), response["Error"]
    return response


def assert_no_temp_files(server: CofferServer) -> None:
    leftovers = storage(server).temp_files()
    assert not leftovers, f"temp files left behind in DATA/.coffer/tmp: {leftovers}"


def assert_absent(s3, bucket: str, key: str) -> None:
    with pytest.raises(ClientError) as raised:
        s3.head_object(Bucket=bucket, Key=key)
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404, raised.value.response


def listing(s3, bucket: str) -> list[tuple[str, int, str]]:
    return [(o["Key"], o["Size"], o["ETag"]) for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def uploads(s3, bucket: str) -> list[tuple[str, str]]:
    return [(u["Key"], u["UploadId"]) for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def refused_write(server: CofferServer, bucket: str, key: str, call: Callable[[], object], status: int,
                  code: str | None = None, message: str | None = None, s3=None) -> dict:
    """A write that must be refused: the error answer, then nothing stored under `key`, the bucket's listing and
    multipart uploads unchanged, and no temp file left in the data dir."""
    s3 = s3 or server.s3
    before = (listing(s3, bucket), uploads(s3, bucket))
    response = expect_error(call, status, code, message)
    assert_absent(s3, bucket, key)
    assert (listing(s3, bucket), uploads(s3, bucket)) == before, "a refused request changed the bucket"
    assert_no_temp_files(server)
    return response


@contextlib.contextmanager
def extra_headers(client, operation: str, set_headers: dict[str, str] | None = None,
                  drop: Iterable[str] = ()) -> Iterator[None]:
    """Change the raw headers of every `operation` request (e.g. "GetObject") the client sends in this block.
    Runs before signing, so the changed headers are signed like the client's own."""
    set_headers = dict(set_headers or {})
    drop = list(drop)

    def hook(request, **_):
        for name in drop + list(set_headers):
            del request.headers[name]  # HTTPHeaders: removes every occurrence, no error when absent
        for name, value in set_headers.items():
            request.headers[name] = value

    event = f"before-sign.s3.{operation}"
    client.meta.events.register(event, hook)
    try:
        yield
    finally:
        client.meta.events.unregister(event, hook)


# ---- KMS admin API ---------------------------------------------------------------------------------------------

def kms_admin(server: CofferServer, method: str, path: str, body: dict | None = None) -> tuple[int, dict | str]:
    """One signed request to the KMS admin API through awscurl: (status, JSON body or text)."""
    args = ["-X", method]
    if body is not None:
        args += ["-d", json.dumps(body), "-H", "Content-Type: application/json"]
    result = server.awscurl(ADMIN_KMS + path, *args, check=False)
    status = awscurl_status(result)
    try:
        return status, json.loads(result.stdout)
    except ValueError:
        return status, result.stdout


def kms_admin_ok(server: CofferServer, method: str, path: str, body: dict | None = None) -> dict:
    status, answer = kms_admin(server, method, path, body)
    assert status == 200, f"KMS admin {method} {path}: HTTP {status}: {answer}"
    return answer


JOB_ENDS = ("completed", "cancelled", "failed")


def job(server: CofferServer, job_id: str) -> dict:
    return kms_admin_ok(server, "GET", f"/jobs/{job_id}")


def job_when_ended(server: CofferServer, job_id: str, timeout: float, poll: float = 0.2) -> dict:
    """Polls a job (rewrap or scrub) until it is completed, cancelled or failed, and returns it."""
    deadline = time.monotonic() + timeout
    while (current := job(server, job_id))["state"] not in JOB_ENDS:
        assert time.monotonic() < deadline, f"job {job_id} still {current['state']} after {timeout}s: {current}"
        time.sleep(poll)
    return current


def vault_store(bao: OpenBao) -> dict:
    """A KMS store's settings for an OpenBao transit engine, logged in with its root token (`POST /stores/NAME`)."""
    return {"type": "vault-transit", "address": bao.address, "auth": {"method": "token", "token": bao.token}}


def create_kms_key(server: CofferServer, key_id: str | None = None) -> str:
    """A new enabled key in the server's KMS (whatever its backend), created through the admin API."""
    key_id = key_id or unique_name("sse-key")
    created = kms_admin_ok(server, "POST", "/keys", {"key_id": key_id})
    assert created["key_id"] == key_id and created["state"] == "Enabled", created
    return key_id


# ---- writes ------------------------------------------------------------------------------------------------------

def multipart_put(s3, bucket: str, key: str, body: bytes, sse: Sse, part_size: int = 5 * MiB) -> None:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key, **sse.write_args())["UploadId"]
    parts = []
    for number, start in enumerate(range(0, len(body), part_size), start=1):
        reply = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                               Body=body[start:start + part_size], **sse.read_args())
        parts.append({"PartNumber": number, "ETag": reply["ETag"]})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})


# ---- content -----------------------------------------------------------------------------------------------------

def random_bytes(size: int, seed: int) -> bytes:
    """Incompressible and reproducible: the same seed gives the same bytes."""
    return random.Random(seed).randbytes(size)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def etag_of(reply: dict) -> str:
    return reply["ETag"].strip('"')
