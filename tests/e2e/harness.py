"""Process harness for the end-to-end tests: runs the real `coffer` release binary, a real OpenBao dev server, and
private PostgreSQL servers and SeaweedFS clusters.

Everything here drives real programs (the server binary, aws CLI v1, awscurl, boto3, `bao`) with their default
settings; no client option is tuned to make the server's life easier. Fixtures in conftest.py build on these types.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
DEFAULT_BIN = REPO / "target" / "release" / "coffer"
REGION = "us-east-1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0
CLIENT_TIMEOUT = 900.0


def tool(name: str) -> str:
    """Path of a client tool installed by scripts/setup.sh (falls back to PATH for ad-hoc runs)."""
    candidate = VENV_BIN / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run scripts/setup.sh first")
    return found


def coffer_binary() -> Path:
    path = Path(os.environ.get("COFFER_BIN", DEFAULT_BIN))
    if not path.exists():
        raise RuntimeError(f"{path} does not exist: run `cargo build --release` (or set COFFER_BIN)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:`port`. SO_REUSEADDR, as servers set it: connections a server closed linger in
    TIME_WAIT on its port for a minute, and they do not stop another server from listening there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def unique_name(prefix: str = "t") -> str:
    """A bucket name no other test uses (S3 rules: lowercase, digits, hyphens, 3..63)."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_random_file(path: Path, size: int) -> Path:
    """Incompressible content, written in 1 MiB slices so a 1 GiB file never sits in memory."""
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            step = min(remaining, 1 << 20)
            handle.write(os.urandom(step))
            remaining -= step
    return path


def crc32_b64(data: bytes) -> str:
    """The value S3 carries in x-amz-checksum-crc32: big-endian CRC32, base64."""
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def stop_process_group(process: subprocess.Popen, timeout: float) -> None:
    """Ends the process group `process` leads (started with start_new_session): SIGTERM, SIGKILL if it lingers, then
    SIGKILL for any child that outlives the leader (wrappers such as the PyPI `bao` start the real binary as one)."""
    if process.poll() is not None:
        return
    pgid = os.getpgid(process.pid)
    os.killpg(pgid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(pgid, signal.SIGKILL)
        process.wait()
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text[-lines:])


# Client environment: nothing from the developer's own AWS setup may leak into a test (profiles, checksum settings,
# proxies), so every AWS_* variable is dropped and the config files point at paths that do not exist.
_NO_AWS_FILE = "/nonexistent/coffer-e2e/aws"


def clean_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "COFFER_", "BAO_", "VAULT_"))}
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        env.pop(proxy, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    env["AWS_CONFIG_FILE"] = _NO_AWS_FILE
    env["AWS_SHARED_CREDENTIALS_FILE"] = _NO_AWS_FILE
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


class CommandFailed(AssertionError):
    """A client command exited non-zero; carries its output so the test report says what went wrong."""

    def __init__(self, args: Sequence[str], result: subprocess.CompletedProcess):
        self.result = result
        super().__init__(
            f"command failed (exit {result.returncode}): {' '.join(args)}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )


def run(args: Sequence[str], env: Mapping[str, str], check: bool = True, input: str | None = None,
        timeout: float = CLIENT_TIMEOUT, cwd: Path | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(list(args), env=dict(env), capture_output=True, text=True, input=input,
                            timeout=timeout, cwd=cwd)
    if check and result.returncode != 0:
        raise CommandFailed(args, result)
    return result


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str

    def __repr__(self) -> str:  # keeps secrets out of pytest's assertion rewriting output
        return f"Credentials({self.access_key!r}, <secret>)"


@dataclass(frozen=True)
class User:
    """An entry of the server's users file."""

    access_key: str
    secret_key: str
    admin: bool = False
    policy: dict | None = None

    @property
    def credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)


@dataclass
class TlsFiles:
    ca_cert: Path
    cert: Path
    key: Path


def make_tls_files(directory: Path) -> TlsFiles:
    """A throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    validity = (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=2))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "coffer e2e test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(validity[0]).not_valid_after(validity[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(validity[0]).not_valid_after(validity[1])
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    directory.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(ca_cert=directory / "ca.pem", cert=directory / "server.pem", key=directory / "server.key")
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    files.key.chmod(0o600)
    return files


@dataclass
class CofferServer:
    """One running `coffer server` process and the clients that talk to it.

    `sandbox` is a private directory: the data dir lives a few levels below it and the server's working directory is
    inside it, so any write that escapes the data dir lands somewhere a test can see.
    """

    sandbox: Path
    data_dir: Path
    port: int
    root: Credentials
    extra_args: Sequence[str] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    tls: TlsFiles | None = None
    binary: Path | None = None  # the server binary; by default coffer_binary() ($COFFER_BIN or the release build)
    process: subprocess.Popen | None = None
    log_path: Path | None = None
    _clients: dict = field(default_factory=dict)

    # ---- lifecycle -------------------------------------------------------------------------------------------
    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def endpoint(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        args = [str(self.binary or coffer_binary()), "server", "--address", f"127.0.0.1:{self.port}",
                "--data", str(self.data_dir)]
        if self.tls:
            args += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
        return args + list(self.extra_args)

    def server_env(self) -> dict[str, str]:
        env = clean_environment()
        env["RUST_LOG"] = os.environ.get("RUST_LOG", "info")
        env["COFFER_ROOT_USER"] = self.root.access_key
        env["COFFER_ROOT_PASSWORD"] = self.root.secret_key
        # The suite runs on the server's default metadata engine (SQLite), on another with
        # COFFER_E2E_METADATA=directory, or =postgres with COFFER_E2E_POSTGRES_URL naming a server (no database):
        # each data directory gets a database of its own there.
        metadata = os.environ.get("COFFER_E2E_METADATA")
        if metadata:
            env["COFFER_METADATA"] = metadata
        # A relative data directory is the server's, resolved against its working directory (see start()).
        data_dir = self.sandbox / "cwd" / self.data_dir
        if metadata == "postgres":
            env["COFFER_METADATA_URL"] = postgres_database_of(os.environ["COFFER_E2E_POSTGRES_URL"], data_dir)
        # COFFER_E2E_DATA=s3 keeps the SQL engine's data on SeaweedFS (one cluster per test process), in one bucket
        # under a prefix of each data directory's own, released data deleted after E2E_RELEASE_GRACE; servers a test
        # starts on the directory engine or another data engine, or on a database that keeps its data in the
        # directory (`coffer migrate` imports there), keep theirs.
        if os.environ.get("COFFER_E2E_DATA") == "s3" and self._sql_metadata(env) and not self._own_data_engine() \
                and not data_kept_in_directory(data_dir):
            cluster = e2e_data_cluster()
            env.update(COFFER_DATA_ENGINE="s3", COFFER_DATA_S3_ENDPOINT=cluster.endpoint,
                       COFFER_DATA_S3_BUCKET=data_bucket_of(cluster),
                       COFFER_DATA_S3_PREFIX=data_prefix_of(data_dir),
                       COFFER_DATA_S3_ACCESS_KEY_ID=cluster.credentials.access_key,
                       COFFER_DATA_S3_SECRET_ACCESS_KEY=cluster.credentials.secret_key,
                       COFFER_DATA_RELEASE_GRACE=E2E_RELEASE_GRACE)
        env.update(self.extra_env)
        return {k: v for k, v in env.items() if v is not None}

    def metadata_url(self) -> str | None:
        """The PostgreSQL database the server keeps its metadata in (`--metadata-url`, its environment variable, or
        the suite-wide COFFER_E2E_METADATA=postgres), if it runs on PostgreSQL."""
        env = self.server_env()
        if self._metadata_engine(env) != "postgres":
            return None
        args = list(self.extra_args)
        if "--metadata-url" in args:
            return args[args.index("--metadata-url") + 1]
        return env.get("COFFER_METADATA_URL")

    def data_s3_client(self):
        """A boto3 client for the server's data bucket (`--data-engine s3`), with the endpoint and credentials the
        server itself uses."""
        import boto3

        env, args = self.server_env(), self.command()
        endpoint = next((args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--data-s3-endpoint"),
                        env.get("COFFER_DATA_S3_ENDPOINT"))
        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=REGION, aws_access_key_id=env["COFFER_DATA_S3_ACCESS_KEY_ID"],
            aws_secret_access_key=env["COFFER_DATA_S3_SECRET_ACCESS_KEY"])

    def _metadata_engine(self, env: Mapping[str, str]) -> str:
        """The server's metadata engine: by its flags, else its extra environment, else `env`, else the default."""
        args = list(self.extra_args)
        metadata = next((args[i + 1] for i, arg in enumerate(args[:-1]) if arg == "--metadata"), None)
        metadata = metadata or next((arg.split("=", 1)[1] for arg in args if arg.startswith("--metadata=")), None)
        return metadata or self.extra_env.get("COFFER_METADATA") or env.get("COFFER_METADATA") or "sqlite"

    def _sql_metadata(self, env: Mapping[str, str]) -> bool:
        return self._metadata_engine(env) != "directory"

    def _own_data_engine(self) -> bool:
        return any(arg.startswith("--data-") for arg in self.extra_args) or \
            any(name.startswith("COFFER_DATA_") and name != "COFFER_DATA" for name in self.extra_env)

    def launch(self) -> None:
        """Starts the process and returns at once; `start` also waits until it listens."""
        self.log_path = self.sandbox / f"server-{self.port}.log"
        workdir = self.sandbox / "cwd"
        workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), env=self.server_env(), cwd=workdir, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def start(self) -> "CofferServer":
        self.launch()
        deadline = time.monotonic() + START_TIMEOUT
        while not port_accepts(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"coffer exited with {self.process.returncode} before listening:\n"
                                   f"{log_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"coffer did not listen on {self.port} within {START_TIMEOUT}s:\n"
                                   f"{log_tail(self.log_path)}")
            time.sleep(0.05)
        return self

    def stop(self) -> int:
        """SIGTERM, then wait: graceful shutdown must end the process with status 0."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"coffer ignored SIGTERM for {STOP_TIMEOUT}s:\n{log_tail(self.log_path)}")

    def kill(self) -> None:
        """SIGKILL, as a crash would end it; a killed server is not expected to have exited gracefully."""
        self.process.kill()
        self.process.wait()
        self.process = None

    def stop_and_check(self) -> None:
        code = self.stop()
        assert code == 0, f"coffer exited with {code} after SIGTERM (graceful shutdown must exit 0):\n" \
                          f"{log_tail(self.log_path)}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    # ---- clients ---------------------------------------------------------------------------------------------
    def client_env(self, creds: Credentials | None = None) -> dict[str, str]:
        creds = creds or self.root
        env = clean_environment()
        env["AWS_ACCESS_KEY_ID"] = creds.access_key
        env["AWS_SECRET_ACCESS_KEY"] = creds.secret_key
        env["AWS_DEFAULT_REGION"] = REGION
        if self.tls:
            env["REQUESTS_CA_BUNDLE"] = str(self.tls.ca_cert)  # awscurl (requests)
            env["AWS_CA_BUNDLE"] = str(self.tls.ca_cert)        # aws CLI / botocore
        return env

    def aws(self, *args: str, check: bool = True, creds: Credentials | None = None,
            input: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
        """`aws --endpoint-url … ARGS` with the aws CLI v1 from .venv and its default settings."""
        command = [tool("aws"), "--endpoint-url", self.endpoint, *args]
        return run(command, self.client_env(creds), check=check, input=input, cwd=cwd)

    def admin_cli(self, *args: str, creds: Credentials | None = None, check: bool = True, json_output: bool = True,
                  input: str | None = None) -> subprocess.CompletedProcess:
        """`coffer admin ARGS [--json]` from the release binary, endpoint and credentials from the environment.
        `input` is its stdin (a pipe, so never a terminal, when given)."""
        creds = creds or self.root
        env = clean_environment()
        env.update(COFFER_ENDPOINT=self.endpoint, COFFER_ROOT_USER=creds.access_key,
                   COFFER_ROOT_PASSWORD=creds.secret_key)
        command = [str(coffer_binary()), "admin", *args] + (["--json"] if json_output else [])
        return run(command, env, check=check, input=input, timeout=180)

    def awscurl(self, path: str, *args: str, check: bool = True,
                creds: Credentials | None = None) -> subprocess.CompletedProcess:
        """awscurl signing for S3 (its default service, execute-api, is not S3). `path` is appended to the endpoint.

        `-v` makes awscurl print `Response code: NNN` on stderr; `awscurl_status(result)` reads it back.
        """
        creds = creds or self.root
        command = [tool("awscurl"), "--service", "s3", "--region", REGION, "--access_key", creds.access_key,
                   "--secret_key", creds.secret_key, "-v", *args, self.endpoint + path]
        return run(command, self.client_env(creds), check=check)

    def s3_client(self, creds: Credentials | None = None, **config):
        """A boto3 S3 client with default settings (config only if a test asks for something specific)."""
        import boto3
        import botocore.config

        creds = creds or self.root
        session = boto3.session.Session()
        return session.client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
            verify=str(self.tls.ca_cert) if self.tls else None,
            config=botocore.config.Config(**config) if config else None,
        )

    @property
    def s3(self):
        """The shared default boto3 client for the root user."""
        if "s3" not in self._clients:
            self._clients["s3"] = self.s3_client()
        return self._clients["s3"]


def awscurl_status(result: subprocess.CompletedProcess) -> int:
    # awscurl pretty-prints the line as a Python string literal: 'Response code: 200\n'
    match = re.search(r"Response code: (\d+)", result.stderr)
    if match:
        return int(match.group(1))
    raise AssertionError(f"awscurl printed no response code:\n{result.stderr[-2000:]}")


def _unsigned_payload_signer(creds: Credentials):
    """botocore's S3 SigV4 signer, told to send `x-amz-content-sha256: UNSIGNED-PAYLOAD` (the body is not hashed)."""
    from botocore.auth import S3SigV4Auth
    from botocore.credentials import Credentials as BotoCredentials

    class Signer(S3SigV4Auth):
        def _should_sha256_sign_payload(self, request):
            return False

    return Signer(BotoCredentials(creds.access_key, creds.secret_key), "s3", REGION)


def sign_unsigned_payload(creds: Credentials, method: str, url: str,
                          headers: Mapping[str, str] | None = None) -> dict[str, str]:
    """SigV4 headers (Host, X-Amz-Date, X-Amz-Content-SHA256, Authorization, plus `headers`) for a hand-made
    request whose body is sent unsigned, e.g. to cut it short or to stream it without hashing on the client."""
    from urllib.parse import urlsplit

    from botocore.awsrequest import AWSRequest

    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    _unsigned_payload_signer(creds).add_auth(request)
    return {"Host": urlsplit(url).netloc, **dict(request.headers.items())}


STREAMING_SIGNED_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"


def sigv4_signing_key(secret_key: str, day: str) -> bytes:
    """SigV4's signing key for S3 in REGION on `day` (YYYYMMDD): the HMAC-SHA256 chain over the day, the region, the
    service and "aws4_request", seeded with "AWS4" + the secret key."""
    key = f"AWS4{secret_key}".encode()
    for part in (day, REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def signed_chunked_put(creds: Credentials, url: str, payload: bytes, chunk_size: int,
                       final_chunk: bool = True) -> tuple[dict[str, str], bytes]:
    """Headers and body of a PUT whose payload travels as signed aws-chunked chunks (`x-amz-content-sha256:
    STREAMING-AWS4-HMAC-SHA256-PAYLOAD`), which botocore has no public helper for.

    botocore signs the request head; its signature seeds the chain. Each chunk is `hex(size);chunk-signature=SIG`,
    CRLF, the data, CRLF, where SIG signs "AWS4-HMAC-SHA256-PAYLOAD", the date, the scope, the previous signature,
    the SHA-256 of nothing and the SHA-256 of the data. A zero-length chunk, signed the same way, ends the body;
    `final_chunk=False` leaves it out."""
    from urllib.parse import urlsplit

    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotoCredentials

    class HeadSigner(S3SigV4Auth):
        def payload(self, request):
            return STREAMING_SIGNED_PAYLOAD

    request = AWSRequest(method="PUT", url=url, headers={"Content-Encoding": "aws-chunked",
                                                         "X-Amz-Decoded-Content-Length": str(len(payload))})
    HeadSigner(BotoCredentials(creds.access_key, creds.secret_key), "s3", REGION).add_auth(request)
    headers = {"Host": urlsplit(url).netloc, **dict(request.headers.items())}

    amz_date = headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{REGION}/s3/aws4_request"
    key = sigv4_signing_key(creds.secret_key, amz_date[:8])
    signature = headers["Authorization"].rsplit("Signature=", 1)[1]
    chunks = [payload[i:i + chunk_size] for i in range(0, len(payload), chunk_size)] + ([b""] if final_chunk else [])
    body = b""
    for chunk in chunks:
        string_to_sign = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, signature,
                                    hashlib.sha256(b"").hexdigest(), hashlib.sha256(chunk).hexdigest()])
        signature = hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        body += f"{len(chunk):x};chunk-signature={signature}\r\n".encode() + chunk + b"\r\n"
    headers["Content-Length"] = str(len(body))
    return headers, body


def write_users_file(path: Path, users: Iterable[User]) -> Path:
    lines = []
    for user in users:
        lines += ["[[user]]", f'access_key = "{user.access_key}"', f'secret_key = "{user.secret_key}"',
                  f"admin = {'true' if user.admin else 'false'}"]
        if user.policy is not None:
            lines.append("policy = '''" + json.dumps(user.policy) + "'''")
        lines.append("")
    path.write_text("\n".join(lines))
    path.chmod(0o600)
    return path


@dataclass
class OpenBao:
    """A real OpenBao dev server (in memory, unsealed) with the transit engine enabled."""

    address: str
    token: str
    home: Path
    audit_log: Path
    process: subprocess.Popen
    log_path: Path

    def env(self) -> dict[str, str]:
        env = clean_environment()
        env.update(BAO_ADDR=self.address, BAO_TOKEN=self.token, VAULT_ADDR=self.address, VAULT_TOKEN=self.token,
                   HOME=str(self.home))
        return env

    def bao(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return run([tool("bao"), *args], self.env(), check=check, input=input, timeout=120)

    def health_status(self) -> int:
        """HTTP status of /v1/sys/health: 200 active, 503 sealed, 429 standby, 501 uninitialised."""
        try:
            with urllib.request.urlopen(self.address + "/v1/sys/health", timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    def stop(self) -> None:
        """The PyPI `bao` is a wrapper that starts the real binary as a child: end the whole process group."""
        stop_process_group(self.process, timeout=20)


def openbao_root_token() -> str:
    return f"e2e-root-{uuid.uuid4().hex}"


def start_openbao(directory: Path, port: int | None = None, token: str | None = None) -> OpenBao:
    """A dev server on `port` (default: a free one) whose root token is `token` (default: a fresh one)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    token = token or openbao_root_token()
    audit_log = directory / "audit.log"
    config = directory / "bao.hcl"
    config.write_text(f'audit "file" "e2e" {{\n  options {{\n    file_path = "{audit_log}"\n  }}\n}}\n')
    home = directory / "home"  # `bao server -dev` writes ~/.vault-token; keep it out of the real home
    home.mkdir(exist_ok=True)
    env = clean_environment()
    env["HOME"] = str(home)
    log_path = directory / "bao.log"
    log = open(log_path, "ab")
    process = subprocess.Popen(
        [tool("bao"), "server", "-dev", f"-dev-root-token-id={token}", f"-dev-listen-address=127.0.0.1:{port}",
         f"-config={config}"],
        env=env, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    bao = OpenBao(address=f"http://127.0.0.1:{port}", token=token, home=home, audit_log=audit_log, process=process,
                  log_path=log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"bao exited with {process.returncode}:\n{log_tail(log_path)}")
        if port_accepts(port) and bao.health_status() == 200:
            break
        if time.monotonic() > deadline:
            bao.stop()
            raise RuntimeError(f"OpenBao was not healthy within {START_TIMEOUT}s:\n{log_tail(log_path)}")
        time.sleep(0.1)
    try:
        bao.bao("secrets", "enable", "transit")
    except Exception:
        bao.stop()
        raise
    return bao


# ---- processes that outlive their parent ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ProcessId:
    """A PID with its start time (field 22 of /proc/PID/stat), so that a PID the kernel has since handed to another
    process is never taken for the one recorded (nor signalled in its place)."""

    pid: int
    started: int

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        """The fields of /proc/PID/stat from the state on (field 3), or None once the process is gone."""
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text.rsplit(")", 1)[1].split()  # the command name before it is in parentheses and may hold spaces

    @classmethod
    def of(cls, pid: int) -> "ProcessId | None":
        fields = cls._stat(pid)
        return None if fields is None else cls(pid, int(fields[19]))

    def alive(self) -> bool:
        """Still running. A zombie (exited, not yet reaped by its parent) holds nothing and counts as gone."""
        fields = self._stat(self.pid)
        return fields is not None and fields[0] != "Z" and int(fields[19]) == self.started

    def kill(self) -> None:
        """SIGKILL through a pidfd opened and then checked against the start time: race-free against PID reuse."""
        try:
            pidfd = os.pidfd_open(self.pid)
        except ProcessLookupError:
            return
        try:
            if self.alive():
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass
        finally:
            os.close(pidfd)


def child_processes(pid: int) -> list[ProcessId]:
    """The processes whose parent is `pid` (found in /proc, as processes that start sessions of their own are in no
    process group of the parent's)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = ProcessId._stat(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                children.append(ProcessId(int(entry.name), int(fields[19])))
    return children


def wait_until_gone(processes: Iterable[ProcessId], timeout: float) -> list[ProcessId]:
    """Waits for the processes to end; returns those still running after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        running = [process for process in processes if process.alive()]
        if not running or time.monotonic() > deadline:
            return running
        time.sleep(0.05)


# ---- PostgreSQL ----------------------------------------------------------------------------------------------------
POSTGRES_TOOLS = ("initdb", "postgres", "psql", "pg_isready")


def postgres_bin_dir() -> Path:
    """The directory holding PostgreSQL's server and client programs, newest major version first.

    Debian's packages keep them in /usr/lib/postgresql/N/bin, off PATH; elsewhere they may be on PATH (the symlink is
    resolved so that all the programs come from one installation). scripts/setup.sh looks in the same places."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda path: [int(part) for part in re.findall(r"\d+", path.parent.name)], reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for directory in candidates:
        if all(os.access(directory / name, os.X_OK) for name in POSTGRES_TOOLS):
            return directory
    raise RuntimeError(f"PostgreSQL ({', '.join(POSTGRES_TOOLS)}) not found: run scripts/setup.sh first")


def postgres_database_of(server_url: str, data_dir: Path) -> str:
    """The URL of the database of one data directory on the PostgreSQL server at `server_url`, created the first time
    (a server restarted on the same directory finds its database again)."""
    name = "e2e_" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20]
    created = subprocess.run([str(postgres_bin_dir() / "psql"), "--no-psqlrc", "--quiet", f"{server_url}/postgres",
                              "--command", f"CREATE DATABASE {name}"], capture_output=True, text=True, timeout=60)
    if created.returncode != 0 and "already exists" not in created.stderr:
        raise RuntimeError(f"cannot create the database {name}: {created.stderr}")
    return f"{server_url}/{name}"


def postgres_account() -> pwd.struct_passwd | None:
    """The account the server runs as: none of its own (the current user) unless that is root, which initdb and
    postgres refuse; then the `postgres` account that Debian's package creates."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root and there is no `postgres` account to run PostgreSQL as (initdb and "
                           "postgres refuse root): run scripts/setup.sh first") from None


class PostgresServer:
    """A private PostgreSQL server: its own data directory, listening on 127.0.0.1 only, on a port of its own.

    The superuser `user` logs in over TCP with `password` (scram-sha-256); the Unix socket, in a directory only the
    server's account can enter, trusts local users. The database `database` exists from the start; `url` points at it.
    """

    def __init__(self, sandbox: Path, port: int):
        self.bin_dir = postgres_bin_dir()
        self.account = postgres_account()
        # The data lives outside pytest's temp tree: as root that tree is private to root, and the `postgres` account
        # could not enter it. The log stays in the sandbox: the server writes it through a descriptor it inherits.
        self.home = Path(tempfile.mkdtemp(prefix="coffer-e2e-postgres-"))
        self.data_dir = self.home / "data"
        self.socket_dir = self.home / "socket"
        self.log_path = sandbox / "postgres.log"
        self.port = port
        self.user = "coffer"
        self.password = "e2e-" + secrets.token_hex(16)
        self.database = "coffer"
        self.process: subprocess.Popen | None = None

    # ---- lifecycle -------------------------------------------------------------------------------------------
    def _as_server_account(self) -> list[str]:
        """The prefix that runs a program as the server's account. setpriv executes the program in its own place, so
        the PID Popen returns is the server's, the one `stop()` signals."""
        if self.account is None:
            return []
        return ["setpriv", f"--reuid={self.account.pw_uid}", f"--regid={self.account.pw_gid}", "--init-groups"]

    def env(self) -> dict[str, str]:
        """The environment for PostgreSQL's programs: none of the developer's PGHOST, PGUSER, PGPASSWORD, ..."""
        env = {k: v for k, v in clean_environment().items() if not k.startswith("PG")}
        env["HOME"] = str(self.home)
        return env

    def init(self) -> None:
        """initdb: the data directory, the superuser and its password, host logins by password."""
        self.socket_dir.mkdir()
        password_file = self.home / "superuser-password"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        if self.account is not None:
            for path in (self.home, self.socket_dir, password_file):
                os.chown(path, self.account.pw_uid, self.account.pw_gid)
        # Locale C: a fresh machine may have no other locale generated. --no-sync: see fsync=off in start().
        run([*self._as_server_account(), str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.user,
             f"--pwfile={password_file}", "--auth-host=scram-sha-256", "--auth-local=trust", "--encoding=UTF8",
             "--locale=C", "--no-sync"], self.env(), timeout=120, cwd=self.home)
        password_file.unlink()

    def start(self) -> None:
        """Starts the server on the data directory (again, after `stop()` or `kill()`) and waits until it accepts
        connections."""
        log = open(self.log_path, "ab")
        # A session of its own: a Ctrl-C meant for pytest does not reach it; the fixtures stop it by PID.
        self.process = subprocess.Popen(
            [*self._as_server_account(), str(self.bin_dir / "postgres"), "-D", str(self.data_dir),
             "-c", "listen_addresses=127.0.0.1", "-c", f"port={self.port}",
             "-c", f"unix_socket_directories={self.socket_dir}",
             # fsync=off only loses data when the machine crashes: a killed server leaves its writes with the kernel,
             # so kill() still tests crash recovery. synchronous_commit stays on for the same reason: with it off, a
             # commit could be acknowledged while its WAL is still in the killed server's memory.
             "-c", "fsync=off"],
            env=self.env(), cwd=self.home, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not self._accepts_connections():
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}:\n{log_tail(self.log_path)}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"PostgreSQL did not accept connections within {START_TIMEOUT}s:\n"
                                   f"{log_tail(self.log_path)}")
            time.sleep(0.05)

    def _accepts_connections(self) -> bool:
        result = run([str(self.bin_dir / "pg_isready"), "--quiet", "--timeout=2", "--host=127.0.0.1",
                      f"--port={self.port}", f"--username={self.user}", "--dbname=postgres"],
                     self.env(), check=False, timeout=30)
        return result.returncode == 0

    def processes(self) -> list[ProcessId]:
        """The postmaster and its children. The children start sessions of their own (setsid), so no process group
        holds them all: they are found by their parent."""
        postmaster = ProcessId.of(self.process.pid)
        return ([postmaster] if postmaster else []) + child_processes(self.process.pid)

    def stop(self) -> None:
        """Fast shutdown by PID (SIGINT: ends the client sessions, writes a checkpoint); it must exit 0 and leave none
        of its processes behind."""
        if self.process is None:
            return
        processes = self.processes()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"PostgreSQL ignored SIGINT for {STOP_TIMEOUT}s:\n{log_tail(self.log_path)}")
        self.process = None
        survivors = wait_until_gone(processes, timeout=0)
        for survivor in survivors:
            survivor.kill()
        assert code == 0 and not survivors, (
            f"PostgreSQL exited with {code} after SIGINT, processes left behind: {[p.pid for p in survivors]}\n"
            f"{log_tail(self.log_path)}")

    def kill(self) -> None:
        """kill -9 of the whole server, as a crash of its machine would end it. The postmaster is frozen first
        (SIGSTOP) so that it starts no other process while its children are listed; then each gets SIGKILL. The data
        directory stays: `start()` recovers from the crash."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)
        processes = self.processes()
        self.process.kill()
        for process in processes:
            process.kill()
        self.process.wait()
        self.process = None
        survivors = wait_until_gone(processes, timeout=STOP_TIMEOUT)
        assert not survivors, f"PostgreSQL processes outlived SIGKILL: {[p.pid for p in survivors]}"

    def remove(self) -> None:
        """Deletes the data directory (the server must be stopped)."""
        assert self.process is None, "stop or kill the server before removing its data"
        shutil.rmtree(self.home, ignore_errors=True)

    def discard(self) -> None:
        """`stop()`, then `remove()` even when stopping failed: the fixtures' end."""
        try:
            self.stop()
        finally:
            self.remove()

    # ---- clients ---------------------------------------------------------------------------------------------
    def url_for(self, database: str) -> str:
        return f"postgres://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        """postgres://USER:PASSWORD@127.0.0.1:PORT/DATABASE (libpq and sqlx read this form)."""
        return self.url_for(self.database)

    def psql(self, sql: str, database: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        """Runs the SQL script `sql` with the real psql, over TCP as the superuser. Rows come out as `a|b` lines (no
        headers, no command tags); the script stops at its first error, and psql then exits non-zero."""
        env = self.env()
        env["PGPASSWORD"] = self.password
        return run([str(self.bin_dir / "psql"), "--no-psqlrc", "--quiet", "--no-align", "--tuples-only",
                    "--set=ON_ERROR_STOP=1", "--host=127.0.0.1", f"--port={self.port}", f"--username={self.user}",
                    f"--dbname={database or self.database}", "--file=-"], env, check=check, input=sql, timeout=120)

    def create_database(self) -> str:
        """A new, empty database for one test on a shared server; returns its name."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self.psql(f"CREATE DATABASE {name}", database="postgres")
        return name


def start_postgres(sandbox: Path) -> PostgresServer:
    """initdb and start a private server on a free port (another one if that port is taken before it binds)."""
    sandbox.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):
        server = PostgresServer(sandbox, free_port())
        try:
            server.init()
            server.start()
            server.psql(f"CREATE DATABASE {server.database}", database="postgres")
            return server
        except Exception as error:
            server.kill()
            server.remove()
            if "already in use" not in str(error) or attempt == 2:
                raise
    raise AssertionError("unreachable")


# ---- SeaweedFS -----------------------------------------------------------------------------------------------------
# weed mini's maintenance worker dials the admin server's gRPC port at the admin HTTP port + 10000, whatever
# -admin.port.grpc says, so the harness picks the two ports with that distance.
SEAWEEDFS_GRPC_PORT_OFFSET = 10000


def _seaweedfs_ports(count: int) -> list[int]:
    """`count` distinct free ports; the last one (the admin port) with port + SEAWEEDFS_GRPC_PORT_OFFSET free too."""
    ports: list[int] = []
    while len(ports) < count - 1:
        port = free_port()
        if port not in ports:
            ports.append(port)
    while True:
        port = free_port()
        paired = port + SEAWEEDFS_GRPC_PORT_OFFSET
        if port not in ports and paired <= 65535 and paired not in ports and port_is_free(paired):
            return ports + [port]


@dataclass
class SeaweedFs:
    """A real SeaweedFS cluster in one `weed mini` process: master, volume server, filer and S3 gateway (and the admin
    server and maintenance worker mini always runs), all on 127.0.0.1 only. `credentials` is the one S3 identity, with
    the Admin action (every operation on every bucket)."""

    directory: Path
    master_port: int
    s3_port: int
    credentials: Credentials
    process: subprocess.Popen | None  # None once stopped
    log_path: Path
    grpc_sockets: list[Path]  # weed puts these in /tmp whatever its flags say, and leaves some there at exit

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def s3_client(self, creds: Credentials | None = None):
        """A boto3 S3 client with default settings."""
        import boto3

        creds = creds or self.credentials
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key)

    def _volume_server_joined(self) -> bool:
        """The master knows a volume server with room for volumes: before that, every write would fail."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.master_port}/dir/status", timeout=2) as response:
                return json.load(response)["Topology"]["Free"] > 0
        except (OSError, ValueError, KeyError, TypeError):
            return False

    def wait_until_serving(self) -> None:
        """Until a volume server has joined and the S3 gateway answers a signed request (so the identities and the
        filer are loaded); raises with the log's tail if weed exits or takes longer than START_TIMEOUT."""
        import botocore.exceptions

        client = self.s3_client()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}:\n{log_tail(self.log_path)}")
            if self._volume_server_joined() and port_accepts(self.s3_port):
                try:
                    client.list_buckets()
                    return
                except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                    pass
            if time.monotonic() > deadline:
                stop_process_group(self.process, timeout=STOP_TIMEOUT)
                raise RuntimeError(f"SeaweedFS did not serve S3 within {START_TIMEOUT}s:\n{log_tail(self.log_path)}")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM to the process group (mini drains S3, the filer and the volume server in about a second); it must
        exit 0 and nothing of the group may survive."""
        if self.process is None:
            return
        process, self.process = self.process, None
        pgid = process.pid  # the leader of its own session and process group
        if process.poll() is None:
            os.killpg(pgid, signal.SIGTERM)
        try:
            code = process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            stop_process_group(process, timeout=0)
            raise AssertionError(f"weed ignored SIGTERM for {STOP_TIMEOUT}s:\n{log_tail(self.log_path)}")
        try:
            os.killpg(pgid, 0)  # a group outlives its leader while any member is left
            survived = True
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            survived = False
        exited = time.time()
        for path in self.grpc_sockets:
            try:
                if path.lstat().st_ctime <= exited:  # not one that a new cluster on a reused port made since
                    path.unlink()
            except FileNotFoundError:
                pass
        assert code == 0 and not survived, (
            f"weed exited with {code} after SIGTERM{', and processes of its group survived' if survived else ''}:\n"
            f"{log_tail(self.log_path)}")


def start_seaweedfs(directory: Path, s3_config: Mapping[str, object] | None = None) -> SeaweedFs:
    """A cluster on free loopback ports, its data in `directory`, with fresh S3 credentials.

    Mini's own defaults are kept where they suit a small machine (volumes created one at a time as buckets fill, a
    1 s filer drain at stop); the components no test uses (WebDAV, the admin UI, the Iceberg
    and Lance catalogs) are off. `s3_config` adds sections to the S3 config file beside the identities (the bench adds
    a local KMS provider)."""
    directory.mkdir(parents=True, exist_ok=True)
    credentials = Credentials("e2e-" + secrets.token_hex(8), secrets.token_hex(20))
    config = directory / "s3-config.json"
    config.write_text(json.dumps({**(s3_config or {}), "identities": [{
        "name": "coffer-e2e",
        "credentials": [{"accessKey": credentials.access_key, "secretKey": credentials.secret_key}],
        "actions": ["Admin"],
    }]}))
    config.chmod(0o600)
    logs = directory / "logs"  # glog's files; without -logdir they would go to /tmp
    logs.mkdir(exist_ok=True)
    # HOME and the working directory are the sandbox: weed reads master.toml, security.toml, ... from both.
    env = {k: v for k, v in clean_environment().items() if not k.startswith("WEED_")}
    env["HOME"] = str(directory)
    log_path = directory / "weed.log"
    for attempt in range(3):
        master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin = _seaweedfs_ports(9)
        log = open(log_path, "ab")
        process = subprocess.Popen(
            [tool("weed"), f"-logdir={logs}", "mini", f"-dir={directory / 'data'}",
             "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
             f"-master.port={master}", f"-master.port.grpc={master_grpc}",
             f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
             f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
             f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
             f"-admin.port={admin}", f"-admin.port.grpc={admin + SEAWEEDFS_GRPC_PORT_OFFSET}", "-admin.ui=false",
             "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
             f"-s3.config={config}",
             "-master.telemetry=false",  # it would report to the SeaweedFS project over the internet
             # a stopping volume server waits this long for clients to move elsewhere; here there is nowhere: 1 s less
             "-volume.preStopSeconds=0",
             # mini allows one volume per GiB of free disk, and every bucket takes volumes of its own: a machine with
             # little free disk would refuse writes to new buckets. Volumes grow as they fill, so a fixed count
             # costs nothing until it is used.
             "-volume.max=300",
             # mini's HTTP sockets default to /tmp/seaweedfs-*-PORT.sock (its gRPC ones stay there: see stop())
             f"-filer.localSocket={directory / 'filer.sock'}", f"-s3.localSocket={directory / 's3.sock'}"],
            env=env, cwd=directory, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
        log.close()
        grpc_sockets = [Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock") for name, port in (
            ("master", master_grpc), ("volume", volume_grpc), ("filer", filer_grpc), ("s3", s3_grpc),
            ("admin", admin + SEAWEEDFS_GRPC_PORT_OFFSET))]
        cluster = SeaweedFs(directory=directory, master_port=master, s3_port=s3, credentials=credentials,
                            process=process, log_path=log_path, grpc_sockets=grpc_sockets)
        try:
            cluster.wait_until_serving()
            return cluster
        except RuntimeError as error:
            # an explicit port that another process took between _seaweedfs_ports() and weed's bind: other ports
            if "not available" not in str(error) or attempt == 2:
                raise
    raise AssertionError("unreachable")


_e2e_data_cluster: SeaweedFs | None = None


def e2e_data_cluster() -> SeaweedFs:
    """The SeaweedFS cluster that keeps the servers' data under COFFER_E2E_DATA=s3: one per test process (so one per
    xdist worker), started when the first server needs it, stopped by `stop_e2e_data_cluster` (conftest.py does at
    the session's end)."""
    global _e2e_data_cluster
    if _e2e_data_cluster is None:
        _e2e_data_cluster = start_seaweedfs(Path(tempfile.mkdtemp(prefix="coffer-e2e-data-")))
    return _e2e_data_cluster


def stop_e2e_data_cluster() -> None:
    global _e2e_data_cluster
    cluster, _e2e_data_cluster = _e2e_data_cluster, None
    if cluster is not None:
        cluster.stop()
        shutil.rmtree(cluster.directory, ignore_errors=True)


# Short, so tests that check what an overwrite leaves can wait for it (storage.py `wait_for_released_deletion`), and
# far longer than any read an overwrite races with in the suite.
E2E_RELEASE_GRACE = "5s"


def data_kept_in_directory(data_dir: Path) -> bool:
    """Whether the SQLite database in `data_dir` says its data is in the data directory."""
    import sqlite3

    database = data_dir / "coffer.sqlite"
    if not database.exists():
        return False
    connection = sqlite3.connect(database, timeout=60)
    try:
        found = connection.execute("SELECT location FROM data_location").fetchall()
    except sqlite3.OperationalError:  # a database from before the table: its data is in the directory
        return True
    finally:
        connection.close()
    return bool(found) and found[0][0] == "directory"


# The one bucket of each e2e data cluster: SeaweedFS gives every bucket volumes of its own, and a bucket per server
# would take hundreds of them in one run.
E2E_DATA_BUCKET = "e2e-data"


def data_bucket_of(cluster: SeaweedFs) -> str:
    """The bucket on `cluster` that keeps every server's data, each under its own prefix; created the first time."""
    import botocore.exceptions

    try:
        cluster.s3_client().create_bucket(Bucket=E2E_DATA_BUCKET)
    except botocore.exceptions.ClientError as error:
        if error.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return E2E_DATA_BUCKET


def data_prefix_of(data_dir: Path) -> str:
    """The prefix of one data directory in the data bucket (a server restarted on the same directory finds its data
    again)."""
    return hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20] + "/"


# One root identity per test session, never the documented admin/admin default.
ROOT = Credentials("coffer-e2e-root", "e2e-" + secrets.token_hex(16))


class CofferFactory:
    """Starts `coffer server` processes for one scope and stops them all (checking exit 0) at its end."""

    def __init__(self, tmp_path_factory):
        self._tmp = tmp_path_factory
        self._servers: list[CofferServer] = []

    def __call__(self, args: Sequence[str] = (), env: Mapping[str, str] | None = None, tls: bool = False,
                 users: Iterable[User] = (), root: Credentials | None = ROOT,
                 data_dir: Path | None = None) -> CofferServer:
        """Start a server.

        args      extra command-line flags (e.g. KMS flags);
        env       extra environment (a value of None removes the variable, e.g. to test the default root user);
        tls       serve HTTPS with a fresh CA-signed certificate (clients get the CA bundle);
        users     written to a users file passed with --users-file;
        root      COFFER_ROOT_USER/PASSWORD; None starts without them;
        data_dir  reuse a data dir (restart tests); by default a new one under a private sandbox.
        """
        sandbox = self._tmp.mktemp("coffer")
        args = list(args)
        users = list(users)
        if users:
            args += ["--users-file", str(write_users_file(sandbox / "users.toml", users))]
        extra_env = dict(env or {})
        if root is None:
            extra_env.setdefault("COFFER_ROOT_USER", None)
            extra_env.setdefault("COFFER_ROOT_PASSWORD", None)
        server = CofferServer(
            sandbox=sandbox,
            # a few levels deep, so a key that climbs out with ../ still lands inside the sandbox where tests look
            data_dir=data_dir or sandbox / "d1" / "d2" / "d3" / "data",
            port=0, root=root or Credentials("admin", "admin"), extra_args=args, extra_env=extra_env,
            tls=make_tls_files(sandbox / "tls") if tls else None,
        )
        for attempt in range(3):
            server.port = free_port()
            try:
                server.start()
                break
            except RuntimeError as error:
                if "in use" not in str(error) or attempt == 2:
                    raise
        self._servers.append(server)
        return server

    def stop_all(self) -> None:
        failures = []
        for server in self._servers:
            try:
                server.stop_and_check()
            except AssertionError as error:
                failures.append(str(error))
        self._servers.clear()
        assert not failures, "\n\n".join(failures)
