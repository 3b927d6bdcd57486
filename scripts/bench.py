"""Coffer benchmark: PUT/GET throughput for one large object and objects/s for many small ones.

Run it with `scripts/bench` (which prepares .venv and the release binary). Each scenario row names a server recipe and
the extra headers its PUTs and GETs carry, so encryption modes and peer servers are one more row each:

    Scenario("SSE-S3", server="coffer", put_headers={"x-amz-server-side-encryption": "AES256"})

The client is deliberately lean so the numbers describe the server: requests are signed with SigV4 by botocore's
signer but sent with `x-amz-content-sha256: UNSIGNED-PAYLOAD` and no checksum over plain keep-alive HTTP/1.1
connections (http.client), bodies are streamed from memory and responses are read into a reused buffer. boto3 with
its defaults would spend about 0.9 CPU-seconds per GB hashing on the same two cores the server uses.
"""

from __future__ import annotations

import argparse
import shutil
import hashlib
import http.client
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from harness import CofferFactory, Credentials, sign_unsigned_payload  # noqa: E402

MiB = 1 << 20
CHUNK = MiB


# ---- servers ----------------------------------------------------------------------------------------------------

@dataclass
class Endpoint:
    """A running S3 server the bench can talk to, and how to stop it."""

    url: str
    creds: Credentials
    stop: Callable[[], None]


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


def coffer_server(workdir: Path, args: tuple[str, ...] = (), env: Mapping[str, str] | None = None) -> Endpoint:
    """The release binary on a free port with a fresh data dir (same launcher as the e2e tests)."""
    factory = CofferFactory(_TempDirs(workdir))
    server = factory(args=args, env=env)
    return Endpoint(url=server.endpoint, creds=server.root, stop=factory.stop_all)


# Server recipes by name. A peer (e.g. SeaweedFS) is another entry returning an Endpoint.
SERVERS: dict[str, Callable[[Path], Endpoint]] = {
    "coffer": coffer_server,
}


@dataclass
class Scenario:
    label: str
    server: str = "coffer"
    put_headers: Mapping[str, str] = field(default_factory=dict)
    get_headers: Mapping[str, str] = field(default_factory=dict)


SCENARIOS: list[Scenario] = [
    Scenario("coffer, plaintext"),
]


# ---- client -----------------------------------------------------------------------------------------------------

class Client:
    """One keep-alive connection; SigV4 with an unsigned payload; bodies streamed, responses drained."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        parts = urlsplit(endpoint.url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
        self.buffer = bytearray(CHUNK)

    def request(self, method: str, path: str, body: memoryview | bytes = b"",
                headers: Mapping[str, str] | None = None, digest=None) -> tuple[int, int, str]:
        """Returns (status, response bytes, etag). `digest` (a hashlib object) is fed the response body if given."""
        signed = sign_unsigned_payload(self.endpoint.creds, method, self.endpoint.url + path,
                                       {**(headers or {}), "Content-Length": str(len(body))})
        conn = self.connection
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in signed.items():
            conn.putheader(name, value)
        conn.endheaders()
        view = memoryview(body)
        for offset in range(0, len(view), CHUNK):
            conn.send(view[offset:offset + CHUNK])
        response = conn.getresponse()
        received = 0
        while True:
            count = response.readinto(self.buffer)
            if not count:
                break
            if digest is not None:
                digest.update(memoryview(self.buffer)[:count])
            received += count
        return response.status, received, (response.getheader("ETag") or "").strip('"')

    def close(self):
        self.connection.close()


def expect(status: int, wanted: int, what: str):
    if status != wanted:
        raise SystemExit(f"bench: {what} answered HTTP {status}, expected {wanted}")


# ---- measurements -----------------------------------------------------------------------------------------------

@dataclass
class Sizes:
    big: int
    small: int
    small_count: int
    concurrency: int
    runs: int


def measure_big(endpoint: Endpoint, scenario: Scenario, bucket: str, data: bytes, runs: int) -> tuple[float, float]:
    """Median MB/s (10^6 bytes/s) for PUT and GET of one object, after one untimed warm-up that checks the bytes."""
    client = Client(endpoint)
    path = f"/{bucket}/big"
    put_rates, get_rates = [], []
    try:
        for run in range(runs + 1):
            started = time.perf_counter()
            status, _, _ = client.request("PUT", path, data, scenario.put_headers)
            put_seconds = time.perf_counter() - started
            expect(status, 200, "PUT big")
            digest = hashlib.md5() if run == 0 else None
            started = time.perf_counter()
            status, received, _ = client.request("GET", path, headers=scenario.get_headers, digest=digest)
            get_seconds = time.perf_counter() - started
            expect(status, 200, "GET big")
            if received != len(data):
                raise SystemExit(f"bench: GET big returned {received} bytes, expected {len(data)}")
            if run == 0:
                if digest.hexdigest() != hashlib.md5(data).hexdigest():
                    raise SystemExit("bench: GET big returned different bytes than were PUT")
                continue  # warm-up
            put_rates.append(len(data) / put_seconds / 1e6)
            get_rates.append(len(data) / get_seconds / 1e6)
    finally:
        client.close()
    return statistics.median(put_rates), statistics.median(get_rates)


def measure_small(endpoint: Endpoint, scenario: Scenario, bucket: str, sizes: Sizes) -> tuple[float, float]:
    """Median objects/s for `small_count` PUTs and then GETs spread over `concurrency` connections."""
    body = os.urandom(sizes.small)
    workers = sizes.concurrency
    clients = [Client(endpoint) for _ in range(workers)]

    def batch(method: str, round_no: int, count: int) -> float:
        def work(worker: int):
            client = clients[worker]
            for n in range(worker, count, workers):
                path = f"/{bucket}/small/{round_no}/{n:06d}"
                if method == "PUT":
                    status, _, _ = client.request("PUT", path, body, scenario.put_headers)
                else:
                    status, received, _ = client.request("GET", path, headers=scenario.get_headers)
                    if received != len(body):
                        raise SystemExit(f"bench: GET small returned {received} bytes")
                expect(status, 200, f"{method} small")

        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            for result in pool.map(work, range(workers)):
                del result
        return count / (time.perf_counter() - started)

    put_rates, get_rates = [], []
    try:
        warmup = max(workers, sizes.small_count // 10)
        batch("PUT", 0, warmup)
        batch("GET", 0, warmup)
        for round_no in range(1, sizes.runs + 1):
            put_rates.append(batch("PUT", round_no, sizes.small_count))
            get_rates.append(batch("GET", round_no, sizes.small_count))
    finally:
        for client in clients:
            client.close()
    return statistics.median(put_rates), statistics.median(get_rates)


def run_scenario(scenario: Scenario, workdir: Path, sizes: Sizes, big_data: bytes) -> dict:
    endpoint = SERVERS[scenario.server](workdir / scenario.label.replace(" ", "_").replace(",", ""))
    try:
        client = Client(endpoint)
        bucket = "bench-" + os.urandom(4).hex()
        status, _, _ = client.request("PUT", f"/{bucket}")
        client.close()
        expect(status, 200, "CreateBucket")
        put_big, get_big = measure_big(endpoint, scenario, bucket, big_data, sizes.runs)
        put_small, get_small = measure_small(endpoint, scenario, bucket, sizes)
    finally:
        endpoint.stop()
    return {"label": scenario.label, "put_big": put_big, "get_big": get_big, "put_small": put_small,
            "get_small": get_small}


def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} vCPU {cpu}, {platform.system()} {platform.release()}, Python {platform.python_version()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--big-mib", type=int, default=256, help="size of the large object (MiB, default 256)")
    parser.add_argument("--small-count", type=int, default=1000, help="number of small objects (default 1000)")
    parser.add_argument("--small-size", type=int, default=4096, help="size of a small object (bytes, default 4096)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections for small objects (default 8)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per measurement, median reported (default 3)")
    parser.add_argument("--only", action="append", default=[], help="run only scenarios whose label contains this")
    parser.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench",
                        help="where servers keep their data (default .cache/bench, emptied per scenario)")
    args = parser.parse_args()

    sizes = Sizes(big=args.big_mib * MiB, small=args.small_size, small_count=args.small_count,
                  concurrency=args.concurrency, runs=args.runs)
    scenarios = [s for s in SCENARIOS if not args.only or any(o in s.label for o in args.only)]
    if not scenarios:
        parser.error("no scenario matches --only")

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    big_data = os.urandom(sizes.big)

    print(f"machine: {machine_description()}")
    print(f"client:  Python http.client, SigV4 UNSIGNED-PAYLOAD, no checksums; small objects over "
          f"{sizes.concurrency} keep-alive connections")
    print(f"method:  median of {sizes.runs} timed runs after one warm-up; MB/s = 10^6 bytes/s\n")
    header = (f"| scenario | PUT {args.big_mib} MiB MB/s | GET {args.big_mib} MiB MB/s | "
              f"PUT {sizes.small_count} x {sizes.small} B obj/s | GET {sizes.small_count} x {sizes.small} B obj/s |")
    rows = []
    try:
        for scenario in scenarios:
            result = run_scenario(scenario, args.workdir, sizes, big_data)
            rows.append(f"| {result['label']} | {result['put_big']:.0f} | {result['get_big']:.0f} | "
                        f"{result['put_small']:.0f} | {result['get_small']:.0f} |")
            print(f"done: {scenario.label}", file=sys.stderr)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print(header)
    print("|---|---:|---:|---:|---:|")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
