"""Servers for scripts/bench.py: the release `coffer` (local KMS or OpenBao transit, data-key cache on or off), a
real OpenBao dev server, and the SeaweedFS peer (`weed mini` with its local KMS provider).

Every server runs on free loopback ports with its data under the bench's work directory and is stopped by the PID
(or process group) this module started — never by name.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import (CofferFactory, Credentials, OpenBao, PostgresServer, start_openbao,  # noqa: E402
                     start_postgres, start_seaweedfs)


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

    def postgres(self) -> PostgresServer:
        """A private PostgreSQL server (same launcher as the e2e tests), removed with its data at the end."""
        server = start_postgres(self.workdir / "postgres")
        self._stops.append(server.discard)
        return server

    def seaweedfs(self) -> Endpoint:
        """`weed mini` (same launcher as the e2e tests) with its local KMS provider creating keys on demand, so SSE-KMS
        requests may name any key without a setup step."""
        weed = start_seaweedfs(self.workdir / "seaweedfs", s3_config={"kms": {
            "default_provider": "local",
            "providers": {"local": {"type": "local", "enableOnDemandCreate": True}},
        }})
        self._stops.append(weed.stop)
        return Endpoint(name="seaweedfs", url=weed.endpoint, creds=weed.credentials, pid=weed.process.pid)
