"""Coffer benchmark: throughput and server CPU per encryption mode, KMS calls per 1,000 SSE-KMS PUTs, peak RSS of a
5 GiB upload; with `--rewrap`, rewrap jobs instead: their rate for small and large objects and the client traffic
they slow down; with `--listing`, listings of a large bucket instead (scripts/bench_listing.py): the first pages a
restarted server answers, warm listings, and the server's RSS; with `--metadata`, the metadata engines' small PUT
and GET rates side by side (scripts/bench_metadata.py); with `--cluster`, one node against three over PostgreSQL
and SeaweedFS (scripts/bench_cluster.py).

Run it with `scripts/bench` (which prepares .venv and the release binary). Each row of the throughput table is a
Scenario: a server, an encryption mode, and the headers its PUTs and GETs carry. `--peers` adds the same rows for
SeaweedFS (`weed mini` with its local KMS) to the same run. The rows are measured in cycles: a cycle visits every row
once — one large PUT, one large GET, or one block of small requests per row — in an order shuffled each cycle, and
lasts seconds (about ten for the large PUTs). Every comparison (SSE vs plaintext, coffer vs peer) is the median of the per-cycle ratios of
the two rows, so load from other work on the machine, which drifts over seconds to minutes, falls on both sides of
each ratio alike. Next to each rate the bench reads the CPU the server process spent on it.

The client is deliberately lean so the numbers describe the server: requests are signed with SigV4 by botocore's
signer but sent with `x-amz-content-sha256: UNSIGNED-PAYLOAD` and no checksum over plain keep-alive HTTP/1.1
connections (http.client), bodies are streamed from memory and responses are read into a reused buffer. boto3 with
its defaults would spend about 0.9 CPU-seconds per GB hashing on the same two cores the server uses.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import http.client
import json
import os
import platform
import random
import re
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping, TypeVar
from urllib.parse import quote, urlsplit

from bench_servers import REPO, Endpoint, Servers  # also puts tests/e2e (the e2e harness) on sys.path
from harness import OpenBao, sign_unsigned_payload

MiB = 1 << 20
GiB = 1 << 30
CHUNK = MiB
ADMIN_KMS = "/coffer/admin/v3/kms"
COFFER_KMS_KEY = "coffer-default"      # the embedded local default key, and the default key on OpenBao
PEER_KMS_KEY = "coffer-bench-key"       # created on demand by SeaweedFS's local KMS provider


# ---- client -----------------------------------------------------------------------------------------------------

@dataclass
class Reply:
    status: int
    size: int                   # response body bytes
    headers: http.client.HTTPMessage
    body: bytes = b""           # only from Client.fetch


class Client:
    """One keep-alive connection; SigV4 with an unsigned payload; bodies streamed, responses drained."""

    def __init__(self, endpoint: Endpoint):
        self.endpoint = endpoint
        parts = urlsplit(endpoint.url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
        self.buffer = bytearray(CHUNK)

    def request(self, method: str, path: str, body: memoryview | bytes = b"",
                headers: Mapping[str, str] | None = None,
                sink: Callable[[memoryview], object] | None = None) -> Reply:
        """Sends one request; `sink`, if given, is fed the response body chunk by chunk."""
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
            if sink is not None:
                sink(memoryview(self.buffer)[:count])
            received += count
        return Reply(response.status, received, response.msg)

    def fetch(self, method: str, path: str, body: memoryview | bytes = b"",
              headers: Mapping[str, str] | None = None) -> Reply:
        """A request whose (small) response body is wanted: XML or JSON."""
        collected = bytearray()
        reply = self.request(method, path, body, headers, sink=collected.extend)
        reply.body = bytes(collected)
        return reply

    def close(self):
        self.connection.close()


def expect(reply: Reply, wanted: int, what: str):
    if reply.status != wanted:
        detail = f": {reply.body[:300].decode(errors='replace')}" if reply.body else ""
        raise SystemExit(f"bench: {what} answered HTTP {reply.status}, expected {wanted}{detail}")


def create_bucket(endpoint: Endpoint) -> str:
    bucket = "bench-" + os.urandom(4).hex()
    client = Client(endpoint)  # every server here is serving S3 once started (SeaweedFS too: the harness waits)
    try:
        reply = client.fetch("PUT", f"/{bucket}")
    finally:
        client.close()
    expect(reply, 200, f"CreateBucket on {endpoint.name}")
    return bucket


def kms_admin(endpoint: Endpoint, method: str, path: str, body: dict | None = None,
              client: Client | None = None) -> dict:
    """One call to coffer's KMS admin API (SigV4-signed as the root user, who is an admin), on `client`'s connection
    or a new one."""
    own = client is None
    client = client or Client(endpoint)
    try:
        payload = b"" if body is None else json.dumps(body).encode()
        headers = {} if body is None else {"Content-Type": "application/json"}
        reply = client.fetch(method, ADMIN_KMS + path, payload, headers)
    finally:
        if own:
            client.close()
    expect(reply, 200, f"{method} kms{path}")
    return json.loads(reply.body)


def kms_status(endpoint: Endpoint) -> dict:
    return kms_admin(endpoint, "GET", "/status")


def backend_calls(status: dict) -> int:
    """Calls to the KMS backend, health probes excluded (they do not depend on the traffic)."""
    return sum(count for operation, count in status["kms_calls"].items() if operation != "health")


# ---- encryption modes and scenarios -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Mode:
    """An encryption mode: headers for PUT / CreateMultipartUpload, for UploadPart, and for GET."""

    name: str
    put_headers: Mapping[str, str] = field(default_factory=dict)
    part_headers: Mapping[str, str] = field(default_factory=dict)
    get_headers: Mapping[str, str] = field(default_factory=dict)


def sse_kms(key_id: str) -> dict[str, str]:
    return {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": key_id}


def sse_c(key: bytes) -> dict[str, str]:
    return {"x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
            "x-amz-server-side-encryption-customer-key-MD5": base64.b64encode(hashlib.md5(key).digest()).decode()}


PLAINTEXT = "plaintext"
SSE_S3 = "SSE-S3"
SSE_KMS_LOCAL = "SSE-KMS (local)"
SSE_KMS_OPENBAO = "SSE-KMS (OpenBao)"
SSE_C = "SSE-C"
MODE_ORDER = [PLAINTEXT, SSE_S3, SSE_KMS_LOCAL, SSE_KMS_OPENBAO, SSE_C]


def make_modes(kms_key: str) -> dict[str, Mode]:
    customer = sse_c(os.urandom(32))
    return {
        PLAINTEXT: Mode(PLAINTEXT),
        SSE_S3: Mode(SSE_S3, put_headers={"x-amz-server-side-encryption": "AES256"}),
        SSE_KMS_LOCAL: Mode(SSE_KMS_LOCAL, put_headers=sse_kms(kms_key)),
        SSE_KMS_OPENBAO: Mode(SSE_KMS_OPENBAO, put_headers=sse_kms(kms_key)),
        SSE_C: Mode(SSE_C, put_headers=customer, part_headers=customer, get_headers=customer),
    }


@dataclass
class Scenario:
    """One table row: a server (by display name), an encryption mode, and the endpoint + bucket it runs against."""

    server: str
    mode: Mode
    endpoint: Endpoint
    bucket: str = ""

    @property
    def label(self) -> str:
        return f"{self.server}, {self.mode.name}"


# ---- measurements -----------------------------------------------------------------------------------------------

@dataclass
class Sizes:
    big: int
    small: int
    small_count: int
    small_block: int
    concurrency: int
    runs: int
    big_gets: int


METRICS = ("put_big", "get_big", "put_small", "get_small")
# Server CPU for the same operations: CPU-seconds per GB (large object) and CPU-microseconds per object (small).
CPU_METRICS = ("cpu_put_big", "cpu_get_big", "cpu_put_small", "cpu_get_small")
# The bench client's own CPU for the same operations, in the same units: it runs on the same two cores.
CLIENT_METRICS = ("client_put_big", "client_get_big", "client_put_small", "client_get_small")


def thread_cpu_ns(pid: int) -> dict[str, int]:
    """CPU time of each thread of `pid` (nanoseconds, from /proc/PID/task/TID/schedstat): exact where the
    process-wide /proc/PID/stat counts 10 ms ticks, too coarse for a 0.1 s GET."""
    times = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            times[task.name] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass    # the thread ended while being read
    return times


class ServerCpu:
    """Measures the CPU server processes (one, or the nodes of a cluster) spend between `start()` and `seconds()`.
    Threads that end in between lose what they spent in the window; the servers here keep their threads for longer
    than one measurement."""

    def __init__(self, *pids: int):
        self.pids = pids
        self.before: dict[str, int] = {}

    def _threads(self) -> dict[str, int]:
        return {f"{pid}/{tid}": ns for pid in self.pids for tid, ns in thread_cpu_ns(pid).items()}

    def start(self):
        self.before = self._threads()

    def seconds(self) -> float:
        return sum(ns - self.before.get(thread, 0) for thread, ns in self._threads().items()) / 1e9


@dataclass
class Timed:
    """One measured operation: its rate (MB/s or objects/s) and the CPU it cost the server and the bench client
    (CPU-s/GB or CPU-µs/object)."""

    rate: float
    cpu: float
    client_cpu: float


def put_big(scenario: Scenario, data: bytes) -> Timed:
    """One PUT of the large object (it replaces the previous one)."""
    client = Client(scenario.endpoint)
    cpu = ServerCpu(scenario.endpoint.pid)
    gigabytes = len(data) / 1e9
    try:
        cpu.start()
        client_started = time.thread_time()
        started = time.perf_counter()
        reply = client.request("PUT", f"/{scenario.bucket}/big", data, scenario.mode.put_headers)
        timed = Timed(len(data) / (time.perf_counter() - started) / 1e6, cpu.seconds() / gigabytes,
                      (time.thread_time() - client_started) / gigabytes)
    finally:
        client.close()
    expect(reply, 200, f"PUT big ({scenario.label})")
    return timed


def get_big(scenario: Scenario, data: bytes, verify: bool) -> Timed:
    """One GET of the large object; `verify` checks the bytes that come back."""
    client = Client(scenario.endpoint)
    cpu = ServerCpu(scenario.endpoint.pid)
    digest = hashlib.md5() if verify else None
    gigabytes = len(data) / 1e9
    try:
        cpu.start()
        client_started = time.thread_time()
        started = time.perf_counter()
        reply = client.request("GET", f"/{scenario.bucket}/big", headers=scenario.mode.get_headers,
                               sink=digest.update if digest else None)
        timed = Timed(len(data) / (time.perf_counter() - started) / 1e6, cpu.seconds() / gigabytes,
                      (time.thread_time() - client_started) / gigabytes)
    finally:
        client.close()
    expect(reply, 200, f"GET big ({scenario.label})")
    if reply.size != len(data):
        raise SystemExit(f"bench: GET big ({scenario.label}) returned {reply.size} bytes, expected {len(data)}")
    if digest is not None and digest.hexdigest() != hashlib.md5(data).hexdigest():
        raise SystemExit(f"bench: GET big ({scenario.label}) returned different bytes than were PUT")
    return timed


class Connections:
    """`count` keep-alive connections and the threads that drive them, kept across batches: to one endpoint, or
    spread evenly over the nodes of a cluster."""

    def __init__(self, endpoint: Endpoint | list[Endpoint], count: int):
        endpoints = endpoint if isinstance(endpoint, list) else [endpoint]
        self.pids = [node.pid for node in endpoints]
        self.clients = [Client(endpoints[number % len(endpoints)]) for number in range(count)]
        self.threads = ThreadPoolExecutor(count)

    def close(self):
        self.threads.shutdown()
        for client in self.clients:
            client.close()


def timed_batch(connections: Connections, numbers: range, one: Callable[[Client, int], None]) -> Timed:
    """Objects/s and server and client CPU-µs per object for one request per number, spread over the connections.
    The client's CPU is the whole bench process's: only these connections' threads work meanwhile."""
    cpu = ServerCpu(*connections.pids)
    width = len(connections.clients)

    def work(worker: int):
        for n in numbers[worker::width]:
            one(connections.clients[worker], n)

    cpu.start()
    client_started = time.process_time()
    started = time.perf_counter()
    for result in connections.threads.map(work, range(width)):
        del result
    return Timed(len(numbers) / (time.perf_counter() - started), cpu.seconds() / len(numbers) * 1e6,
                 (time.process_time() - client_started) / len(numbers) * 1e6)


def small_requests(bucket: str, mode: Mode, label: str, prefix: str,
                   body: bytes) -> tuple[Callable[[Client, int], None], Callable[[Client, int], None]]:
    """The PUT and the GET of small object number n."""

    def put(client: Client, n: int):
        expect(client.request("PUT", f"/{bucket}/{prefix}/{n:06d}", body, mode.put_headers), 200,
               f"PUT small ({label})")

    def get(client: Client, n: int):
        reply = client.request("GET", f"/{bucket}/{prefix}/{n:06d}", headers=mode.get_headers)
        expect(reply, 200, f"GET small ({label})")
        if reply.size != len(body):
            raise SystemExit(f"bench: GET small ({label}) returned {reply.size} bytes, expected {len(body)}")

    return put, get


def small_puts_and_gets(endpoint: Endpoint, bucket: str, mode: Mode, prefix: str, body: bytes, count: int,
                        concurrency: int, between: Callable[[], None] = lambda: None) -> tuple[Timed, Timed]:
    """`count` PUTs of `body` and then `count` GETs of them; `between` runs untimed in the middle."""
    put, get = small_requests(bucket, mode, f"{endpoint.name}, {mode.name}", prefix, body)
    connections = Connections(endpoint, concurrency)
    try:
        puts = timed_batch(connections, range(count), put)
        between()
        return puts, timed_batch(connections, range(count), get)
    finally:
        connections.close()


class Cycles:
    """Every value measured, per row and metric, one per cycle. A cycle visits every row once, in an order shuffled
    each cycle, and lasts seconds, so the n-th values of two rows were taken moments apart: their ratio is a paired
    comparison that the machine's load, drifting over seconds to minutes, does not bias."""

    def __init__(self):
        self.values: dict[str, dict[str, list[float]]] = {}

    def add(self, label: str, metric: str, value: float):
        self.values.setdefault(label, {}).setdefault(metric, []).append(value)

    def median(self, label: str, metric: str) -> float:
        return statistics.median(self.values[label][metric])

    def ratios(self, label: str, base: str, metric: str) -> list[float]:
        """`label` ÷ `base` in each cycle."""
        return [value / reference for value, reference in zip(self.values[label][metric], self.values[base][metric])]

    def paired(self, label: str, base: str, metric: str) -> float:
        """The median of the per-cycle ratios `label` ÷ `base`."""
        return statistics.median(self.ratios(label, base, metric))

    def has(self, label: str) -> bool:
        return label in self.values


Row = TypeVar("Row")


def cycle_order(rows: list[Row], cycle: int) -> list[Row]:
    """The rows in a shuffled order, a different one each cycle (seeded by the cycle: the same in every run). Not a
    rotation: in a rotation every row would always follow the same row and inherit whatever that row leaves behind
    (a server's background work, dirty pages)."""
    order = list(rows)
    random.Random(cycle).shuffle(order)
    return order


def run_throughput(scenarios: list[Scenario], sizes: Sizes, big_data: bytes) -> Cycles:
    """Four phases, each in cycles over every row after a warm-up (whose large GETs are checked byte for byte):
    large PUTs (`runs` cycles), large GETs (`runs` x `big_gets` cycles), small PUTs and small GETs (`runs` x
    `small_count` objects per row, in blocks of `small_block` objects, one block per row per cycle)."""
    cycles = Cycles()
    for scenario in scenarios:
        put_big(scenario, big_data)
        get_big(scenario, big_data, verify=True)
    progress("warm-up of the large object")
    run_phase(scenarios, cycles, "put_big", sizes.runs, lambda s, _: put_big(s, big_data))
    run_phase(scenarios, cycles, "get_big", sizes.runs * sizes.big_gets,
              lambda s, _: get_big(s, big_data, verify=False))

    small_body = os.urandom(sizes.small)
    total = sizes.runs * sizes.small_count
    blocks = [range(start, min(start + sizes.small_block, total)) for start in range(0, total, sizes.small_block)]
    warmup = range(max(sizes.concurrency, sizes.small_count // 10))
    # Opened only now: a server may close a keep-alive connection left idle through the large phases.
    connections = {s.label: Connections(s.endpoint, sizes.concurrency) for s in scenarios}
    try:
        for scenario in scenarios:
            for request in small_requests(scenario.bucket, scenario.mode, scenario.label, "warm-up", small_body):
                timed_batch(connections[scenario.label], warmup, request)
        progress("warm-up of small objects")
        requests = {s.label: small_requests(s.bucket, s.mode, s.label, "small", small_body) for s in scenarios}
        for metric, request in (("put_small", 0), ("get_small", 1)):
            run_phase(scenarios, cycles, metric, len(blocks), lambda s, cycle, request=request: timed_batch(
                connections[s.label], blocks[cycle], requests[s.label][request]))
    finally:
        for pool in connections.values():
            pool.close()
    return cycles


def run_phase(scenarios: list[Scenario], cycles: Cycles, metric: str, count: int,
              measure: Callable[[Scenario, int], Timed]):
    """`count` cycles of `measure(row, cycle)` over every row; records the rate and the server's and the client's
    CPU."""
    index = METRICS.index(metric)
    for cycle in range(count):
        for scenario in cycle_order(scenarios, cycle):
            timed = measure(scenario, cycle)
            cycles.add(scenario.label, metric, timed.rate)
            cycles.add(scenario.label, CPU_METRICS[index], timed.cpu)
            cycles.add(scenario.label, CLIENT_METRICS[index], timed.client_cpu)
    progress(f"{metric}, {count} cycles: " + ", ".join(f"{s.label} {cycles.median(s.label, metric):.0f}"
                                                       for s in scenarios))


def progress(what: str):
    print(f"bench: {what}", file=sys.stderr, flush=True)


@dataclass
class KmsCalls:
    label: str
    put_calls: int
    get_calls: int
    put_rate: float
    get_rate: float
    transit_put: int | None = None
    transit_get: int | None = None


def transit_requests(bao: OpenBao | None) -> int | None:
    """Requests to the transit engine recorded so far in OpenBao's audit log (None without OpenBao). LIST requests
    are left out: they are coffer's health probe (one per status read), which the server's counter leaves out too."""
    if bao is None:
        return None
    count = 0
    for line in bao.audit_log.read_text().splitlines():
        entry = json.loads(line)
        request = entry.get("request", {})
        if (entry.get("type") == "request" and request.get("path", "").startswith("transit/")
                and request.get("operation") != "list"):
            count += 1
    return count


def measure_kms_calls(label: str, endpoint: Endpoint, mode: Mode, sizes: Sizes, count: int,
                      bao: OpenBao | None) -> KmsCalls:
    """KMS backend calls (the server's own counters, and OpenBao's audit log when there is one) for `count`
    SSE-KMS PUTs of small objects into a fresh bucket — so the first PUT misses the data-key cache — and then
    `count` GETs of them."""
    bucket = create_bucket(endpoint)
    before = backend_calls(kms_status(endpoint)), transit_requests(bao)
    middle: list[tuple[int, int | None]] = []

    def snapshot():
        middle.append((backend_calls(kms_status(endpoint)), transit_requests(bao)))

    puts, gets = small_puts_and_gets(endpoint, bucket, mode, "kms", os.urandom(sizes.small), count,
                                     sizes.concurrency, between=snapshot)
    after = backend_calls(kms_status(endpoint)), transit_requests(bao)
    (put_calls, transit_put), (get_calls, transit_get) = [
        (b[0] - a[0], None if bao is None else b[1] - a[1]) for a, b in ((before, middle[0]), (middle[0], after))]
    print(f"kms calls: {label}: {put_calls} per {count} PUTs, {get_calls} per {count} GETs", file=sys.stderr,
          flush=True)
    return KmsCalls(label, put_calls, get_calls, puts.rate, gets.rate, transit_put, transit_get)


@dataclass
class Footprint:
    label: str
    rate: float
    rss_before: int
    peak: int


def proc_status_kib(pid: int, field_name: str) -> int:
    match = re.search(rf"^{field_name}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    if match is None:
        raise SystemExit(f"bench: /proc/{pid}/status has no {field_name}")
    return int(match.group(1))


def multipart_peak_rss(scenario: Scenario, total: int, part_size: int, big_data: bytes) -> Footprint:
    """Resets the server's peak RSS (clear_refs 5), uploads `total` bytes as one multipart object in `part_size`
    parts (slices of the in-memory test data, so the client never holds more than that), reads VmHWM, deletes."""
    pid = scenario.endpoint.pid
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    rss_before = proc_status_kib(pid, "VmRSS")
    path = f"/{scenario.bucket}/multipart-{os.urandom(4).hex()}"
    client = Client(scenario.endpoint)
    started = time.perf_counter()
    try:
        reply = client.fetch("POST", f"{path}?uploads", headers=scenario.mode.put_headers)
        expect(reply, 200, f"CreateMultipartUpload ({scenario.label})")
        upload_id = re.search(rb"<UploadId>([^<]+)</UploadId>", reply.body).group(1).decode()
        query = f"uploadId={quote(upload_id, safe='')}"
        slices = len(big_data) // part_size
        etags = []
        for number in range(1, total // part_size + 1):
            offset = (number - 1) % slices * part_size
            part = memoryview(big_data)[offset:offset + part_size]
            reply = client.fetch("PUT", f"{path}?partNumber={number}&{query}", part, scenario.mode.part_headers)
            expect(reply, 200, f"UploadPart {number} ({scenario.label})")
            etags.append(reply.headers["ETag"])
        manifest = "".join(f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
                           for n, etag in enumerate(etags, start=1))
        reply = client.fetch("POST", f"{path}?{query}",
                             f"<CompleteMultipartUpload>{manifest}</CompleteMultipartUpload>".encode())
        expect(reply, 200, f"CompleteMultipartUpload ({scenario.label})")
        if b"<Error>" in reply.body:  # S3 may report a failed completion inside a 200 response
            raise SystemExit(f"bench: CompleteMultipartUpload ({scenario.label}) failed: {reply.body[:300]!r}")
        rate = total / (time.perf_counter() - started) / 1e6
        peak = proc_status_kib(pid, "VmHWM")
        expect(client.fetch("DELETE", path), 204, f"DELETE multipart object ({scenario.label})")
    finally:
        client.close()
    print(f"multipart: {scenario.label}: {rate:.0f} MB/s, peak RSS {peak / 1024:.0f} MiB", file=sys.stderr,
          flush=True)
    return Footprint(scenario.label, rate, rss_before, peak)


# ---- rewrap jobs (--rewrap) -------------------------------------------------------------------------------------

@dataclass
class RewrapSizes:
    count: int          # objects per size for the rewrap rate
    big: int            # the large objects' size
    small: int          # the small objects' size (also the client traffic's)
    background: int     # objects the job rewraps while the client traffic is measured
    block: int          # client requests per block (PUTs, then as many GETs)
    cycles: int
    concurrency: int    # client connections


IDLE = "no job"
BUSY = "rewrap job running"


def rewrap_bucket(endpoint: Endpoint, name: str, count: int, body: bytes | memoryview,
                  connections: int) -> tuple[str, str]:
    """A bucket of `count` SSE-KMS objects of `body` under a key of its own: (bucket, key id)."""
    key_id = f"bench-{name}-{os.urandom(3).hex()}"
    kms_admin(endpoint, "POST", "/keys", {"key_id": key_id})
    bucket = create_bucket(endpoint)
    put, _ = small_requests(bucket, Mode(name, put_headers=sse_kms(key_id)), name, name, body)
    pool = Connections(endpoint, connections)
    try:
        timed_batch(pool, range(count), put)
    finally:
        pool.close()
    return bucket, key_id


def start_rewrap(endpoint: Endpoint, client: Client, bucket: str, key_id: str) -> dict:
    """Rotates the key and starts a job moving the bucket's objects onto its new version (default settings)."""
    kms_admin(endpoint, "POST", f"/keys/{key_id}/rotate", client=client)
    job = kms_admin(endpoint, "POST", "/jobs/rewrap", {"buckets": [bucket], "from": {"key": key_id}}, client=client)
    if job["state"] != "running":
        raise SystemExit(f"bench: a rewrap job did not start: {job}")
    return job


def timed_rewrap(endpoint: Endpoint, bucket: str, key_id: str, count: int) -> Timed:
    """Rotate, rewrap the whole bucket, poll until done: objects/s from the POST to the first poll that sees the job
    completed, and the server's CPU per object over the same time (client CPU: the polling)."""
    client = Client(endpoint)
    cpu = ServerCpu(endpoint.pid)
    try:
        kms_admin(endpoint, "POST", f"/keys/{key_id}/rotate", client=client)
        cpu.start()
        client_started = time.thread_time()
        started = time.perf_counter()
        job = kms_admin(endpoint, "POST", "/jobs/rewrap", {"buckets": [bucket], "from": {"key": key_id}},
                        client=client)
        while job["state"] == "running":
            time.sleep(0.005)
            job = kms_admin(endpoint, "GET", f"/jobs/{job['id']}", client=client)
        elapsed = time.perf_counter() - started
        timed = Timed(count / elapsed, cpu.seconds() / count * 1e6,
                      (time.thread_time() - client_started) / count * 1e6)
    finally:
        client.close()
    if job["state"] != "completed" or job["progress"]["changed"] != count or job["progress"]["failed"]:
        raise SystemExit(f"bench: the rewrap job did not change all {count} objects: {job}")
    return timed


def measure_rewrap_rate(endpoint: Endpoint, sizes: RewrapSizes) -> tuple[Cycles, list[str]]:
    """Rewrap rate of `count` small and `count` large objects, one job per size per cycle, in shuffled order."""
    rows = {f"{sizes.small} B": (sizes.small, os.urandom(sizes.small), 8),
            f"{sizes.big // MiB} MiB": (sizes.big, os.urandom(sizes.big), 2)}
    buckets = {label: rewrap_bucket(endpoint, f"rewrap-{size}", sizes.count, body, connections)
               for label, (size, body, connections) in rows.items()}
    progress(f"rewrap: {sizes.count} objects of each size written")
    cycles = Cycles()
    for cycle in range(sizes.cycles):
        for label in cycle_order(list(rows), cycle):
            timed = timed_rewrap(endpoint, *buckets[label], sizes.count)
            cycles.add(label, "rewrap", timed.rate)
            cycles.add(label, "cpu_rewrap", timed.cpu)
    progress("rewrap rate: " + ", ".join(f"{label} {cycles.median(label, 'rewrap'):.0f} obj/s" for label in rows))
    return cycles, list(rows)


def measure_rewrap_slowdown(endpoint: Endpoint, sizes: RewrapSizes) -> tuple[Cycles, list[float]]:
    """Small SSE-S3 PUTs and GETs of client traffic, in blocks, with no job and while a rewrap job (default settings:
    4 objects at once, unthrottled) works through `background` objects of another bucket, the two situations in
    shuffled order each cycle. The job is cancelled at the end of its block; its own rate during the block is kept."""
    background, key_id = rewrap_bucket(endpoint, "rewrap-background", sizes.background, os.urandom(sizes.small), 8)
    traffic = create_bucket(endpoint)
    put, get = small_requests(traffic, Mode(SSE_S3, put_headers={"x-amz-server-side-encryption": "AES256"}),
                              "client traffic", "traffic", os.urandom(sizes.small))
    connections = Connections(endpoint, sizes.concurrency)
    control = Client(endpoint)
    cycles = Cycles()
    job_rates = []
    try:
        warmup = range(sizes.block)
        timed_batch(connections, warmup, put)
        timed_batch(connections, warmup, get)
        progress(f"rewrap: {sizes.background} background objects written")
        first = sizes.block
        for cycle in range(sizes.cycles):
            for situation in cycle_order([IDLE, BUSY], cycle):
                numbers = range(first, first + sizes.block)
                first += sizes.block
                job = start_rewrap(endpoint, control, background, key_id) if situation == BUSY else None
                started = time.perf_counter()
                puts = timed_batch(connections, numbers, put)
                gets = timed_batch(connections, numbers, get)
                if job is not None:
                    seen = kms_admin(endpoint, "GET", f"/jobs/{job['id']}", client=control)
                    if seen["state"] != "running":
                        raise SystemExit(f"bench: the rewrap job ended before the client block did (raise "
                                         f"--rewrap-background): {seen}")
                    job_rates.append(seen["progress"]["examined"] / (time.perf_counter() - started))
                    kms_admin(endpoint, "POST", f"/jobs/{job['id']}/cancel", client=control)
                    while kms_admin(endpoint, "GET", f"/jobs/{job['id']}", client=control)["state"] == "running":
                        time.sleep(0.01)
                for metric, timed in (("put_small", puts), ("get_small", gets)):
                    cycles.add(situation, metric, timed.rate)
                    cycles.add(situation, "cpu_" + metric, timed.cpu)
    finally:
        control.close()
        connections.close()
    progress("client traffic: " + ", ".join(f"{situation} {cycles.median(situation, 'put_small'):.0f} PUT/s "
                                            f"{cycles.median(situation, 'get_small'):.0f} GET/s"
                                            for situation in (IDLE, BUSY)))
    return cycles, job_rates


def rewrap_report(rate: Cycles, labels: list[str], slowdown: Cycles, job_rates: list[float],
                  sizes: RewrapSizes) -> str:
    small, big = labels
    rows = []
    for label in labels:
        paired = ""
        if label == big:
            low, high = quartiles(rate.ratios(big, small, "rewrap"))
            paired = f" ({rate.paired(big, small, 'rewrap'):.2f}x of {small}; {low:.2f} … {high:.2f})"
        rows.append([label, str(sizes.count), f"{rate.median(label, 'rewrap'):.0f}{paired}",
                     f"{rate.median(label, 'cpu_rewrap'):.0f}"])
    text = (f"Rewrap rate: one job per size and cycle ({sizes.cycles} cycles), each after a rotation of the objects' "
            f"key, job defaults (concurrency 4, unthrottled); median over the cycles (in brackets: median of the "
            f"per-cycle ratios to the small objects, 25th … 75th percentile):\n\n")
    text += table(["objects (SSE-KMS)", "count", "rewrap obj/s", "server CPU-µs/obj"], rows)
    rows = []
    for situation in (IDLE, BUSY):
        cells = []
        for metric in ("put_small", "get_small"):
            cell = f"{slowdown.median(situation, metric):.0f}"
            if situation == BUSY:
                low, high = quartiles(slowdown.ratios(BUSY, IDLE, metric))
                cell += f" ({slowdown.paired(BUSY, IDLE, metric) - 1:+.1%}; {low - 1:+.0%} … {high - 1:+.0%})"
            cells.append(cell)
            cells.append(f"{slowdown.median(situation, 'cpu_' + metric):.0f}")
        rows.append([situation, *cells])
    text += (f"\n\nClient traffic while a rewrap job runs: {sizes.cycles} cycles of one block per situation "
             f"({sizes.block} SSE-S3 PUTs of {sizes.small} B, then {sizes.block} GETs, over {sizes.concurrency} "
             f"connections), in shuffled order; median over the cycles (in brackets: median of the per-cycle changes "
             f"against no job, 25th … 75th percentile). The job rewrapped {statistics.median(job_rates):.0f} obj/s "
             f"(median) meanwhile:\n\n")
    text += table(["situation", "PUT obj/s", "server CPU-µs/PUT", "GET obj/s", "server CPU-µs/GET"], rows)
    return text


# ---- report -----------------------------------------------------------------------------------------------------

def machine_description() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"{os.cpu_count()} vCPU {cpu}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; load average {load} at the start")


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def quartiles(ratios: list[float]) -> tuple[float, float]:
    """The 25th and 75th percentile (both the one value when there is one)."""
    if len(ratios) < 2:
        return ratios[0], ratios[0]
    low, _, high = statistics.quantiles(ratios, n=4, method="inclusive")
    return low, high


def throughput_report(scenarios: list[Scenario], cycles: Cycles, sizes: Sizes,
                      big_mib: int) -> tuple[str, list[str]]:
    """The throughput table (each SSE cell with its paired change against the same server's plaintext row), the
    coffer ÷ peer table, the quartiles of the paired ratios, the CPU tables, and the list of cells that miss a
    target. Targets are read from the paired ratios' medians."""
    columns = [f"PUT {big_mib} MiB MB/s", f"GET {big_mib} MiB MB/s",
               f"PUT {sizes.small} B obj/s", f"GET {sizes.small} B obj/s"]
    misses = []
    rows = []
    spread_rows = []
    for scenario in scenarios:
        plain = f"{scenario.server}, {PLAINTEXT}"
        paired = scenario.mode.name != PLAINTEXT and cycles.has(plain)
        cells = []
        spread_cells = []
        for metric, column in zip(METRICS, columns):
            cell = f"{cycles.median(scenario.label, metric):.0f}"
            if paired:
                ratio = cycles.paired(scenario.label, plain, metric)
                low, high = quartiles(cycles.ratios(scenario.label, plain, metric))
                cell += f" ({ratio - 1:+.0%})"
                spread_cells.append(f"{ratio - 1:+.1%} ({low - 1:+.0%} … {high - 1:+.0%})")
                if scenario.server == "coffer" and ratio < 0.95:
                    misses.append(f"SSE within 5% of plaintext: {scenario.mode.name}, {column}: {ratio - 1:+.1%}")
            cells.append(cell)
        rows.append([scenario.label, *cells])
        if paired:
            spread_rows.append([scenario.label, *spread_cells])
    text = table(["row", *columns], rows)

    ratio_rows = []
    for mode in MODE_ORDER:
        ours, theirs = f"coffer, {mode}", f"seaweedfs, {mode}"
        if not (cycles.has(ours) and cycles.has(theirs)):
            continue
        cells = []
        for metric, column in zip(METRICS, columns):
            ratio = cycles.paired(ours, theirs, metric)
            low, high = quartiles(cycles.ratios(ours, theirs, metric))
            cells.append(f"{ratio:.2f}x ({low:.2f} … {high:.2f})")
            if ratio < 1:
                misses.append(f"ahead of the peer: {mode}, {column}: coffer/seaweedfs = {ratio:.2f}x")
        ratio_rows.append([mode, *cells])
    if ratio_rows:
        text += ("\n\ncoffer / seaweedfs, same mode: median of the per-cycle ratios (in brackets: 25th … 75th "
                 "percentile; > 1 means coffer is faster):\n\n")
        text += table(["mode", *columns], ratio_rows)
    if spread_rows:
        text += ("\n\nSSE against the same server's plaintext: median of the per-cycle changes (in brackets: 25th … "
                 "75th percentile), the numbers the 5 % target is read from:\n\n")
        text += table(["row", *columns], spread_rows)
    text += ("\n\nServer CPU for the same operations (median; in brackets: paired change against the same server's "
             "plaintext row):\n\n")
    text += cpu_table(scenarios, cycles, sizes, big_mib)
    text += (f"\n\nLarge GETs ({big_mib} MiB, one connection): the CPU of server and client, and how many of the "
             f"machine's cores that kept busy (median of each):\n\n")
    text += cores_table(scenarios, cycles, "get_big", "GET MB/s", "CPU-s/GB")
    for metric, verb in (("put_small", "PUT"), ("get_small", "GET")):
        text += (f"\n\nSmall {verb}s ({sizes.small} B, {sizes.concurrency} connections): the CPU of server and "
                 f"client, and how many of the machine's cores that kept busy (median of each):\n\n")
        text += cores_table(scenarios, cycles, metric, f"{verb} obj/s", "CPU-µs/obj")
    return text, misses


def cpu_table(scenarios: list[Scenario], cycles: Cycles, sizes: Sizes, big_mib: int) -> str:
    """Server CPU per GB (large object) and per object (small), from the server process's threads."""
    columns = [f"PUT {big_mib} MiB CPU-s/GB", f"GET {big_mib} MiB CPU-s/GB",
               f"PUT {sizes.small} B CPU-µs/obj", f"GET {sizes.small} B CPU-µs/obj"]
    rows = []
    for scenario in scenarios:
        plain = f"{scenario.server}, {PLAINTEXT}"
        cells = []
        for metric in CPU_METRICS:
            value = cycles.median(scenario.label, metric)
            cell = f"{value:.3f}" if metric.endswith("big") else f"{value:.0f}"
            if scenario.mode.name != PLAINTEXT and cycles.has(plain):
                cell += f" ({cycles.paired(scenario.label, plain, metric) - 1:+.0%})"
            cells.append(cell)
        rows.append([scenario.label, *cells])
    return table(["row", *columns], rows)


def cores_table(scenarios: list[Scenario], cycles: Cycles, metric: str, rate_unit: str, cpu_unit: str) -> str:
    """For one operation: the rate, the server's and the client's CPU per unit, the cores that kept busy at the
    measured rate, and for SSE rows the cores they would need to keep busy to reach 95 % of the same server's
    plaintext rate. With server and client on one machine, a mode that costs more CPU per unit can only keep up by
    keeping more cores busy."""
    index = METRICS.index(metric)
    per_second = 1e-3 if metric.endswith("big") else 1e-6  # MB/s x CPU-s/GB, or objects/s x CPU-µs/object
    digits = 3 if metric.endswith("big") else 0
    columns = [rate_unit, f"server {cpu_unit}", f"client {cpu_unit}", "cores busy", "cores for 95 % of plaintext"]
    rows = []
    for scenario in scenarios:
        rate = cycles.median(scenario.label, metric)
        server = cycles.median(scenario.label, CPU_METRICS[index])
        client = cycles.median(scenario.label, CLIENT_METRICS[index])
        plain = f"{scenario.server}, {PLAINTEXT}"
        needed = "-"
        if scenario.mode.name != PLAINTEXT and cycles.has(plain):
            needed = f"{(server + client) * 0.95 * cycles.median(plain, metric) * per_second:.2f}"
        rows.append([scenario.label, f"{rate:.0f}", f"{server:.{digits}f}", f"{client:.{digits}f}",
                     f"{(server + client) * rate * per_second:.2f}", needed])
    return table(["row", *columns], rows)


def kms_report(rows: list[KmsCalls], count: int) -> tuple[str, list[str]]:
    body = []
    misses = []
    for row in rows:
        transit = "-" if row.transit_put is None else f"{row.transit_put} / {row.transit_get}"
        body.append([row.label, str(row.put_calls), str(row.get_calls), transit, f"{row.put_rate:.0f}",
                     f"{row.get_rate:.0f}"])
        if "cache on" in row.label and row.put_calls * 1000 / count > 1:
            misses.append(f"<= 1 KMS call per 1,000 cached PUTs: {row.label}: {row.put_calls} per {count}")
    header = ["coffer KMS backend, data-key cache", f"KMS calls / {count} PUTs", f"KMS calls / {count} GETs",
              "OpenBao transit requests (audit log) PUTs / GETs", "PUT obj/s", "GET obj/s"]
    return table(header, body), misses


def rss_report(rows: list[Footprint], total: int, part_size: int) -> str:
    body = [[row.label, f"{row.rate:.0f}", f"{row.rss_before / 1024:.0f}", f"{row.peak / 1024:.0f}"]
            for row in rows]
    return table([f"row ({total // GiB} GiB multipart, {part_size // MiB} MiB parts)", "MB/s",
                  "server RSS before (MiB)", "server peak RSS (MiB)"], body)


# ---- main -------------------------------------------------------------------------------------------------------

def build_scenarios(servers: Servers, peers: bool) -> list[Scenario]:
    coffer = servers.coffer("coffer")
    coffer_openbao = servers.coffer_on_openbao("coffer-openbao")
    modes = make_modes(COFFER_KMS_KEY)
    scenarios = [Scenario("coffer", modes[name], coffer_openbao if name == SSE_KMS_OPENBAO else coffer)
                 for name in MODE_ORDER]
    if peers:
        weed = servers.seaweedfs()
        peer_modes = make_modes(PEER_KMS_KEY)
        scenarios += [Scenario("seaweedfs", peer_modes[name], weed) for name in MODE_ORDER
                      if name != SSE_KMS_OPENBAO]  # SeaweedFS runs with its local KMS provider only
    return scenarios


def grouped_by_mode(scenarios: list[Scenario]) -> list[Scenario]:
    """coffer and peer rows of the same mode next to each other in the tables."""
    return sorted(scenarios, key=lambda s: MODE_ORDER.index(s.mode.name))


def measure_kms(servers: Servers, scenarios: list[Scenario], sizes: Sizes, count: int) -> list[KmsCalls]:
    by_mode = {s.mode.name: s for s in scenarios if s.server == "coffer"}
    rows = []
    for mode_name, start, label in ((SSE_KMS_LOCAL, servers.coffer, "local"),
                                    (SSE_KMS_OPENBAO, servers.coffer_on_openbao, "OpenBao transit")):
        cached = by_mode.get(mode_name)
        if cached is None:
            continue
        bao = servers.openbao() if mode_name == SSE_KMS_OPENBAO else None
        uncached = start(f"coffer-{label}-nocache", ("--kms-cache", "false"))
        rows.append(measure_kms_calls(f"{label}, cache on", cached.endpoint, cached.mode, sizes, count, bao))
        rows.append(measure_kms_calls(f"{label}, cache off", uncached, cached.mode, sizes, count, bao))
    return rows


def run_rewrap(args: argparse.Namespace) -> int:
    """`--rewrap`: the rewrap rate for small and large objects, then client traffic with and without a job, on one
    coffer with its embedded local KMS."""
    sizes = RewrapSizes(count=args.rewrap_count, big=args.rewrap_big_mib * MiB, small=args.small_size,
                        background=args.rewrap_background, block=args.rewrap_block, cycles=args.rewrap_cycles,
                        concurrency=args.concurrency)
    print(f"method:  {sizes.cycles} cycles of each measurement, its rows in shuffled order; rates are medians over "
          f"the cycles, comparisons medians of per-cycle ratios; server CPU from /proc/PID/task/*/schedstat\n",
          flush=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    try:
        with Servers(args.workdir) as servers:
            endpoint = servers.coffer("coffer")
            rate, labels = measure_rewrap_rate(endpoint, sizes)
            slowdown, job_rates = measure_rewrap_slowdown(endpoint, sizes)
            print(rewrap_report(rate, labels, slowdown, job_rates, sizes), flush=True)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", action="store_true",
                        help="also measure SeaweedFS (weed mini, its local KMS) in the same run, interleaved")
    parser.add_argument("--rss", action="store_true",
                        help="also measure the server's peak RSS during a multipart upload (--rss-gib, default 5)")
    parser.add_argument("--rss-gib", type=int, default=5, help="size of the multipart upload for --rss (GiB)")
    parser.add_argument("--part-mib", type=int, default=64, help="part size of that upload (MiB, default 64)")
    parser.add_argument("--kms-count", type=int, default=1000,
                        help="SSE-KMS PUTs (then GETs) per KMS-call count, cache on and off (default 1000; 0 skips)")
    parser.add_argument("--big-mib", type=int, default=256, help="size of the large object (MiB, default 256)")
    parser.add_argument("--small-count", type=int, default=1000,
                        help="small objects per row and round (default 1000)")
    parser.add_argument("--small-block", type=int, default=200,
                        help="small requests per row and cycle (default 200)")
    parser.add_argument("--small-size", type=int, default=4096, help="size of a small object (bytes, default 4096)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections for small objects (default 8)")
    parser.add_argument("--runs", type=int, default=3,
                        help="rounds: cycles of large PUTs, and small_count objects per row (default 3)")
    parser.add_argument("--big-gets", type=int, default=3,
                        help="cycles of large GETs per round (default 3)")
    parser.add_argument("--rewrap", action="store_true",
                        help="measure rewrap jobs instead: their rate for small and large objects, and client "
                             "traffic with and without a job running")
    parser.add_argument("--rewrap-count", type=int, default=200,
                        help="objects of each size a rewrap job moves (default 200)")
    parser.add_argument("--rewrap-big-mib", type=int, default=64, help="size of the large objects (MiB, default 64)")
    parser.add_argument("--rewrap-background", type=int, default=10000,
                        help="small objects the job works through while client traffic is measured (default 10000)")
    parser.add_argument("--rewrap-block", type=int, default=400,
                        help="client PUTs (then GETs) per block with and without a job (default 400)")
    parser.add_argument("--rewrap-cycles", type=int, default=7, help="cycles of each rewrap measurement (default 7)")
    parser.add_argument("--listing", action="store_true",
                        help="measure listings instead: a restarted server's first listing pages of a large bucket, "
                             "warm listings and the server's RSS (the --listing-* options)")
    parser.add_argument("--listing-keys", type=int, default=1_000_000,
                        help="keys in the bucket (default 1000000; 1000 … 10000000)")
    parser.add_argument("--listing-server", action="append", default=[], metavar="LABEL=BINARY [ARGS…]",
                        help="a server to measure: a binary and extra `coffer server` arguments; repeatable, the "
                             "first is the base of the ratios (default: coffer=$COFFER_BIN)")
    parser.add_argument("--listing-data-dir", type=Path,
                        help="keep the filled data here (a directory per label), reuse and top it up in later runs; "
                             "default: under --workdir, removed at the end")
    parser.add_argument("--listing-rounds", type=int, default=3,
                        help="rounds: restarts per listing and server (default 3)")
    parser.add_argument("--listing-repeats", type=int, default=9,
                        help="warm visits of every listing per round (default 9)")
    parser.add_argument("--listing-connections", type=int, default=32, help="connections of the fill (default 32)")
    parser.add_argument("--listing-drop-caches", action="store_true",
                        help="before every start, sync and drop the page cache, dentries and inodes of the whole "
                             "machine (root only; slows everything else running on it): a cold-cache start")
    parser.add_argument("--metadata", action="store_true",
                        help="measure the metadata engines instead: small PUT and GET rates of each engine side by "
                             "side at several concurrencies (the --metadata-* options, --small-size, --small-block)")
    parser.add_argument("--metadata-engine", action="append", default=[], metavar="ENGINE",
                        help="an engine to measure (`coffer server --metadata ENGINE`); repeatable, the first is the "
                             "base of the ratios (default: directory, sqlite)")
    parser.add_argument("--metadata-concurrency", action="append", type=int, default=[], metavar="N",
                        help="client connections; repeatable (default: 16 and 64)")
    parser.add_argument("--metadata-cycles", type=int, default=7, help="cycles of each measurement (default 7)")
    parser.add_argument("--cluster", action="store_true",
                        help="measure one node against three instead: small PUT and GET rates of each deployment on "
                             "its own PostgreSQL database and SeaweedFS bucket, clients spread over its nodes (the "
                             "--metadata-concurrency and --metadata-cycles options, --small-size, --small-block)")
    parser.add_argument("--only", action="append", default=[],
                        help="throughput rows whose label (e.g. 'coffer, SSE-C') contains this; repeatable")
    parser.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench",
                        help="where servers keep their data (default .cache/bench, removed at the end)")
    args = parser.parse_args()

    sizes = Sizes(big=args.big_mib * MiB, small=args.small_size, small_count=args.small_count,
                  small_block=args.small_block, concurrency=args.concurrency, runs=args.runs,
                  big_gets=args.big_gets)
    part_size = args.part_mib * MiB
    if args.rss and (part_size > sizes.big or sizes.big % part_size):
        parser.error("--part-mib must divide --big-mib (parts are slices of the large test object)")

    print(f"machine: {machine_description()}")
    if args.listing:
        # Imported here: bench_listing builds on this module's client and tables.
        from bench_listing import run_listing
        return run_listing(args)
    if args.metadata:
        from bench_metadata import run_metadata
        return run_metadata(args)
    if args.cluster:
        from bench_cluster import run_cluster
        return run_cluster(args)
    print(f"client:  Python http.client, SigV4 UNSIGNED-PAYLOAD, no checksums; small objects over "
          f"{sizes.concurrency} keep-alive connections")
    if args.rewrap:
        return run_rewrap(args)
    small_cycles = -(-args.runs * sizes.small_count // sizes.small_block)
    print(f"method:  rows measured in cycles, one visit per row each, shuffled; {args.runs} cycles of large PUTs, "
          f"{args.runs * args.big_gets} of large GETs, {small_cycles} each of small PUTs and GETs (blocks of "
          f"{sizes.small_block}) after one warm-up; rates are medians over the cycles, comparisons medians of "
          f"per-cycle ratios; MB/s = 10^6 bytes/s; server CPU from /proc/PID/task/*/schedstat\n", flush=True)

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    big_data = os.urandom(sizes.big)
    misses: list[str] = []
    try:
        with Servers(args.workdir) as servers:
            scenarios = grouped_by_mode(build_scenarios(servers, args.peers))
            chosen = [s for s in scenarios if not args.only or any(o in s.label for o in args.only)]
            if not chosen:
                parser.error("no row matches --only")
            for scenario in scenarios:
                scenario.bucket = create_bucket(scenario.endpoint)

            cycles = run_throughput(chosen, sizes, big_data)
            text, found = throughput_report(chosen, cycles, sizes, args.big_mib)
            misses += found
            print(text + "\n", flush=True)

            if args.kms_count:
                rows = measure_kms(servers, scenarios, sizes, args.kms_count)
                text, found = kms_report(rows, args.kms_count)
                misses += found
                print(text + "\n", flush=True)

            if args.rss:
                footprints = [multipart_peak_rss(s, args.rss_gib * GiB, part_size, big_data) for s in scenarios
                              if s.mode.name in (PLAINTEXT, SSE_KMS_LOCAL, SSE_C)]
                print(rss_report(footprints, args.rss_gib * GiB, part_size) + "\n", flush=True)
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)

    print("targets: SSE within 5% of plaintext; ahead of the peer in every row; <= 1 KMS call per 1,000 cached PUTs")
    print("\n".join(f"missed: {miss}" for miss in misses) if misses else "no target missed in the rows measured")
    return 0


if __name__ == "__main__":
    sys.exit(main())
