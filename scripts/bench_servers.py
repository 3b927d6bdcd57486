"""Servers for scripts/bench.py: the release `coffer` (local KMS or OpenBao transit, data-key cache on or off), a
real OpenBao dev server, and the SeaweedFS peer (`weed mini` with its local KMS provider).

Every server runs on free loopback ports with its data under the bench's work directory and is stopped by the PID
(or process group) this module started — never by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import (START_TIMEOUT, CofferFactory, Credentials, OpenBao, clean_environment, free_port,  # noqa: E402
                     log_tail, port_accepts, start_openbao, stop_process_group, tool)

STOP_TIMEOUT = 30.0


@dataclass
class Endpoint:
    """A running S3 server the bench can talk to: its URL, root credentials and server process id."""

    name: str
    url: str
    creds: Credentials
    pid: int


class _TempDirs:
    """The tmp_path_factory subset CofferFactory needs, backed by one bench directory."""

    def __init__(self, root: Path):
        self.root = root
        self.count = 0

    def mktemp(self, name: str) -> Path:
        self.count += 1
        path = self.root / f"{name}{self.count}"
        path.mkdir(parents=True)
        return path


class Servers:
    """Starts the servers a bench run needs and stops all of them (in reverse order) on exit."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self._coffers = CofferFactory(_TempDirs(workdir / "coffer"))
        self._stops: list[Callable[[], None]] = [self._coffers.stop_all]
        self._openbao: OpenBao | None = None

    def __enter__(self) -> "Servers":
        return self

    def __exit__(self, *exc) -> None:
        for stop in reversed(self._stops):
            try:
                stop()
            except Exception as error:  # keep stopping the others; say what went wrong
                print(f"bench: stopping a server failed: {error}", file=sys.stderr)

    def coffer(self, name: str, args: tuple[str, ...] = (), env: dict[str, str] | None = None) -> Endpoint:
        """The release binary on a free port with a fresh data dir (same launcher as the e2e tests)."""
        server = self._coffers(args=args, env=env)
        return Endpoint(name=name, url=server.endpoint, creds=server.root, pid=server.process.pid)

    def openbao(self) -> OpenBao:
        """One OpenBao dev server with transit enabled and a file audit device, shared by the vault-backed coffers."""
        if self._openbao is None:
            self._openbao = start_openbao(self.workdir / "openbao")
            self._stops.append(self._openbao.stop)
        return self._openbao

    def coffer_on_openbao(self, name: str, args: tuple[str, ...] = ()) -> Endpoint:
        bao = self.openbao()
        return self.coffer(name, ("--kms-backend", "vault", "--kms-vault-address", bao.address, *args),
                           env={"COFFER_KMS_VAULT_TOKEN": bao.token})

    def seaweedfs(self) -> Endpoint:
        weed = start_seaweedfs(self.workdir / "seaweedfs")
        self._stops.append(weed.stop)
        return weed.endpoint


@dataclass
class SeaweedFs:
    endpoint: Endpoint
    process: subprocess.Popen
    log_path: Path

    def stop(self) -> None:
        stop_process_group(self.process, timeout=STOP_TIMEOUT)


def _port_pair() -> tuple[int, int]:
    """A free port P with P + 10000 free too: weed's admin worker dials the admin gRPC port at HTTP port + 10000."""
    while True:
        port = free_port()
        if port + 10000 < 65536 and not port_accepts(port + 10000):
            return port, port + 10000


def start_seaweedfs(directory: Path) -> SeaweedFs:
    """`weed mini` (master, volume, filer, S3 and admin in one process) on free loopback ports.

    Its S3 identity is the bench's own; its KMS is the local provider with on-demand key creation, so SSE-KMS
    requests may name any key without a setup step.
    """
    data = directory / "data"
    data.mkdir(parents=True)
    creds = Credentials("bench-" + os.urandom(4).hex(), os.urandom(16).hex())
    config = directory / "s3.json"
    config.write_text(json.dumps({
        "identities": [{"name": "bench", "credentials": [{"accessKey": creds.access_key,
                                                           "secretKey": creds.secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"]}],
        "kms": {"default_provider": "local",
                "providers": {"local": {"type": "local", "enableOnDemandCreate": True}}},
    }))
    config.chmod(0o600)
    s3_port = free_port()
    admin_port, admin_grpc = _port_pair()
    ports = {name: free_port() for name in ("s3.port.grpc", "master.port", "master.port.grpc", "filer.port",
                                            "filer.port.grpc", "volume.port", "volume.port.grpc")}
    command = [tool("weed"), "mini", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-s3.port={s3_port}", f"-admin.port={admin_port}", f"-admin.port.grpc={admin_grpc}",
               *(f"-{name}={port}" for name, port in ports.items()),
               "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", f"-s3.config={config}"]
    log_path = directory / "weed.log"
    log = open(log_path, "ab")
    process = subprocess.Popen(command, env=clean_environment(), cwd=directory, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    weed = SeaweedFs(Endpoint(name="seaweedfs", url=f"http://127.0.0.1:{s3_port}", creds=creds, pid=process.pid),
                     process, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while not port_accepts(s3_port):
        if process.poll() is not None:
            raise RuntimeError(f"weed exited with {process.returncode}:\n{log_tail(log_path)}")
        if time.monotonic() > deadline:
            weed.stop()
            raise RuntimeError(f"weed did not listen on {s3_port} within {START_TIMEOUT}s:\n{log_tail(log_path)}")
        time.sleep(0.1)
    return weed
