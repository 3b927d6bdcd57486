"""Process harness for the end-to-end tests: runs the real `coffer` release binary and a real OpenBao dev server.

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
import re
import secrets
import shutil
import signal
import socket
import subprocess
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
        args = [str(coffer_binary()), "server", "--address", f"127.0.0.1:{self.port}", "--data", str(self.data_dir)]
        if self.tls:
            args += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key)]
        return args + list(self.extra_args)

    def server_env(self) -> dict[str, str]:
        env = clean_environment()
        env["RUST_LOG"] = os.environ.get("RUST_LOG", "info")
        env["COFFER_ROOT_USER"] = self.root.access_key
        env["COFFER_ROOT_PASSWORD"] = self.root.secret_key
        # The whole suite runs on another metadata engine with COFFER_E2E_METADATA=sqlite.
        if os.environ.get("COFFER_E2E_METADATA"):
            env["COFFER_METADATA"] = os.environ["COFFER_E2E_METADATA"]
        env.update(self.extra_env)
        return {k: v for k, v in env.items() if v is not None}

    def start(self) -> "CofferServer":
        self.log_path = self.sandbox / f"server-{self.port}.log"
        workdir = self.sandbox / "cwd"
        workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.command(), env=self.server_env(), cwd=workdir, stdin=subprocess.DEVNULL,
                                        stdout=log, stderr=subprocess.STDOUT)
        log.close()
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
    key = f"AWS4{creds.secret_key}".encode()
    for part in (amz_date[:8], REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
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
