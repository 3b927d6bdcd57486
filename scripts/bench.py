"""Coffer benchmark: throughput and server CPU per encryption mode, KMS calls per 1,000 SSE-KMS PUTs, peak RSS of a
5 GiB upload.

Run it with `scripts/bench` (which prepares .venv and the release binary). Each row of the throughput table is a
Scenario: a server, an encryption mode, and the headers its PUTs and GETs carry. `--peers` adds the same rows for
SeaweedFS (`weed mini` with its local KMS) to the same run. The rows are measured interleaved — every round visits
every row, in a rotated order — so load from other work on the machine falls on all rows alike; each number is the
median of the timed rounds after one warm-up round. Next to each rate the bench reads the CPU the server process
spent on it, which does not move with what the client did on the same cores.

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
import re
import shutil
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping
from urllib.parse import quote, urlsplit

from bench_servers import REPO, Endpoint, Servers  # also puts tests/e2e (the e2e harness) on sys.path
from harness import OpenBao, sign_unsigned_payload

MiB = 1 << 20
GiB = 1 << 30
CHUNK = MiB
KMS_STATUS_PATH = "/coffer/admin/v3/kms/status"
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
    client = Client(endpoint)
    try:
        deadline = time.monotonic() + 60  # SeaweedFS accepts connections before its filer is ready
        while True:
            reply = client.fetch("PUT", f"/{bucket}")
            if reply.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    finally:
        client.close()
    expect(reply, 200, f"CreateBucket on {endpoint.name}")
    return bucket


def kms_status(endpoint: Endpoint) -> dict:
    """The coffer admin API's KMS status (SigV4-signed as the root user, who is an admin)."""
    client = Client(endpoint)
    try:
        reply = client.fetch("GET", KMS_STATUS_PATH)
    finally:
        client.close()
    expect(reply, 200, "GET kms/status")
    return json.loads(reply.body)


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
    concurrency: int
    runs: int
    big_gets: int


METRICS = ("put_big", "get_big", "put_small", "get_small")
# Server CPU for the same operations: CPU-seconds per GB (large object) and CPU-microseconds per object (small).
CPU_METRICS = ("cpu_put_big", "cpu_get_big", "cpu_put_small", "cpu_get_small")
# The bench client's own CPU for the large GET (CPU-seconds per GB): it runs on the same two cores.
CLIENT_GET_BIG = "client_get_big"


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
    """Measures the CPU a server process spends between `start()` and `seconds()`. Threads that end in between
    lose what they spent in the window; the servers here keep their threads for longer than one measurement."""

    def __init__(self, pid: int):
        self.pid = pid
        self.before: dict[str, int] = {}

    def start(self):
        self.before = thread_cpu_ns(self.pid)

    def seconds(self) -> float:
        after = thread_cpu_ns(self.pid)
        return sum(ns - self.before.get(tid, 0) for tid, ns in after.items()) / 1e9


@dataclass
class Timed:
    """One measured operation: its rate (MB/s or objects/s) and the server CPU it cost (CPU-s/GB or CPU-µs/object);
    for large GETs also the client's CPU (CPU-s/GB)."""

    rate: float
    cpu: float
    client_cpu: float = 0.0


def measure_big(scenario: Scenario, data: bytes, gets: int, verify: bool) -> tuple[Timed, Timed]:
    """One PUT of the large object, then `gets` GETs of it (the median GET is reported: a 256 MiB GET takes a tenth
    of a second, so single GETs are noisy); `verify` checks the bytes that come back."""
    client = Client(scenario.endpoint)
    cpu = ServerCpu(scenario.endpoint.pid)
    path = f"/{scenario.bucket}/big"
    gigabytes = len(data) / 1e9
    try:
        cpu.start()
        started = time.perf_counter()
        reply = client.request("PUT", path, data, scenario.mode.put_headers)
        put = Timed(len(data) / (time.perf_counter() - started) / 1e6, cpu.seconds() / gigabytes)
        expect(reply, 200, f"PUT big ({scenario.label})")
        got = []
        for _ in range(gets):
            digest = hashlib.md5() if verify else None
            cpu.start()
            client_started = time.thread_time()
            started = time.perf_counter()
            reply = client.request("GET", path, headers=scenario.mode.get_headers,
                                   sink=digest.update if digest else None)
            elapsed = time.perf_counter() - started
            got.append(Timed(len(data) / elapsed / 1e6, cpu.seconds() / gigabytes,
                             (time.thread_time() - client_started) / gigabytes))
            expect(reply, 200, f"GET big ({scenario.label})")
            if reply.size != len(data):
                raise SystemExit(f"bench: GET big ({scenario.label}) returned {reply.size} bytes, "
                                 f"expected {len(data)}")
            if digest is not None and digest.hexdigest() != hashlib.md5(data).hexdigest():
                raise SystemExit(f"bench: GET big ({scenario.label}) returned different bytes than were PUT")
    finally:
        client.close()
    return put, Timed(statistics.median(g.rate for g in got), statistics.median(g.cpu for g in got),
                      statistics.median(g.client_cpu for g in got))


def timed_batch(endpoint: Endpoint, concurrency: int, count: int, one: Callable[[Client, int], None]) -> Timed:
    """Objects/s and server CPU-µs per object for `count` requests over `concurrency` fresh keep-alive
    connections."""
    clients = [Client(endpoint) for _ in range(concurrency)]
    cpu = ServerCpu(endpoint.pid)

    def work(worker: int):
        for n in range(worker, count, concurrency):
            one(clients[worker], n)

    try:
        cpu.start()
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            for result in pool.map(work, range(concurrency)):
                del result
        return Timed(count / (time.perf_counter() - started), cpu.seconds() / count * 1e6)
    finally:
        for client in clients:
            client.close()


def small_puts_and_gets(endpoint: Endpoint, bucket: str, mode: Mode, prefix: str, body: bytes, count: int,
                        concurrency: int, between: Callable[[], None] = lambda: None) -> tuple[Timed, Timed]:
    """`count` PUTs of `body` and then `count` GETs of them; `between` runs untimed in the middle."""
    label = f"{endpoint.name}, {mode.name}"

    def put(client: Client, n: int):
        expect(client.request("PUT", f"/{bucket}/{prefix}/{n:06d}", body, mode.put_headers), 200,
               f"PUT small ({label})")

    def get(client: Client, n: int):
        reply = client.request("GET", f"/{bucket}/{prefix}/{n:06d}", headers=mode.get_headers)
        expect(reply, 200, f"GET small ({label})")
        if reply.size != len(body):
            raise SystemExit(f"bench: GET small ({label}) returned {reply.size} bytes, expected {len(body)}")

    puts = timed_batch(endpoint, concurrency, count, put)
    between()
    return puts, timed_batch(endpoint, concurrency, count, get)


def run_throughput(scenarios: list[Scenario], sizes: Sizes, big_data: bytes) -> dict[str, dict[str, float]]:
    """Round 0 is the warm-up (and checks the large object's bytes); rounds 1..runs are timed. Every round visits
    every scenario, starting one further along the list each time. Returns the median of each metric (METRICS and
    CPU_METRICS) per label."""
    samples: dict[str, dict[str, list[float]]] = {
        s.label: {m: [] for m in (*METRICS, *CPU_METRICS, CLIENT_GET_BIG)} for s in scenarios}
    small_body = os.urandom(sizes.small)
    warmup_count = max(sizes.concurrency, sizes.small_count // 10)
    for round_no in range(sizes.runs + 1):
        shift = round_no % len(scenarios)
        for scenario in scenarios[shift:] + scenarios[:shift]:
            put_big, get_big = measure_big(scenario, big_data, sizes.big_gets, verify=round_no == 0)
            put_small, get_small = small_puts_and_gets(
                scenario.endpoint, scenario.bucket, scenario.mode, f"small/{round_no}", small_body,
                warmup_count if round_no == 0 else sizes.small_count, sizes.concurrency)
            what = "warm-up" if round_no == 0 else f"round {round_no}/{sizes.runs}"
            print(f"{what}: {scenario.label}: PUT {put_big.rate:.0f} MB/s, GET {get_big.rate:.0f} MB/s, "
                  f"PUT {put_small.rate:.0f} obj/s, GET {get_small.rate:.0f} obj/s", file=sys.stderr, flush=True)
            if round_no:
                measured = (put_big, get_big, put_small, get_small)
                for metric, cpu_metric, timed in zip(METRICS, CPU_METRICS, measured):
                    samples[scenario.label][metric].append(timed.rate)
                    samples[scenario.label][cpu_metric].append(timed.cpu)
                samples[scenario.label][CLIENT_GET_BIG].append(get_big.client_cpu)
    results = {label: {m: statistics.median(v) for m, v in metrics.items()} for label, metrics in samples.items()}
    for label, metrics in samples.items():
        for metric in METRICS:
            rates = metrics[metric]
            results[label][spread(metric)] = (max(rates) - min(rates)) / statistics.median(rates)
    return results


def spread(metric: str) -> str:
    """The results key of a rate's spread over the timed rounds: (max - min) / median."""
    return f"spread_{metric}"


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


def change(value: float, base: float) -> str:
    return f"{value / base - 1:+.0%}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput_report(scenarios: list[Scenario], results: dict[str, dict[str, float]], sizes: Sizes,
                      big_mib: int) -> tuple[str, list[str]]:
    """The throughput table (each SSE cell with its change against the same server's plaintext row), the
    coffer ÷ peer table, and the list of cells that miss a target."""
    columns = [f"PUT {big_mib} MiB MB/s", f"GET {big_mib} MiB MB/s",
               f"PUT {sizes.small_count} x {sizes.small} B obj/s", f"GET {sizes.small_count} x {sizes.small} B obj/s"]
    misses = []
    rows = []
    for scenario in scenarios:
        plain = results.get(f"{scenario.server}, {PLAINTEXT}")
        cells = []
        for metric, column in zip(METRICS, columns):
            value = results[scenario.label][metric]
            cell = f"{value:.0f}"
            if plain is not None and scenario.mode.name != PLAINTEXT:
                cell += f" ({change(value, plain[metric])})"
                if scenario.server == "coffer" and value < 0.95 * plain[metric]:
                    misses.append(f"SSE within 5% of plaintext: {scenario.mode.name}, {column}: "
                                  f"{change(value, plain[metric])}")
            cells.append(cell)
        rows.append([scenario.label, *cells])
    text = table(["row", *columns], rows)

    ratio_rows = []
    for mode in MODE_ORDER:
        ours, theirs = results.get(f"coffer, {mode}"), results.get(f"seaweedfs, {mode}")
        if ours is None or theirs is None:
            continue
        cells = []
        for metric, column in zip(METRICS, columns):
            ratio = ours[metric] / theirs[metric]
            cells.append(f"{ratio:.2f}x")
            if ratio < 1:
                misses.append(f"ahead of the peer: {mode}, {column}: coffer/seaweedfs = {ratio:.2f}x")
        ratio_rows.append([mode, *cells])
    if ratio_rows:
        text += "\n\ncoffer / seaweedfs (same row, same run; > 1 means coffer is faster):\n\n"
        text += table(["mode", *columns], ratio_rows)
    text += ("\n\nServer CPU for the same operations (median; in brackets: change against the same server's "
             "plaintext row):\n\n")
    text += cpu_table(scenarios, results, sizes, big_mib)
    text += (f"\n\nLarge GETs ({big_mib} MiB, one connection): the CPU of server and client together, and how many "
             f"of the machine's cores that kept busy (median of each):\n\n")
    text += cores_table(scenarios, results)
    text += (f"\n\nSpread of the timed rounds, (max - min) / median of each rate over {sizes.runs} rounds: how far "
             f"one round of a row moves on this machine, against which the 5 % target and the peer ratios are "
             f"read:\n\n")
    text += table(["row", *columns], [[s.label, *(f"{results[s.label][spread(m)]:.0%}" for m in METRICS)]
                                      for s in scenarios])
    return text, misses


def cpu_table(scenarios: list[Scenario], results: dict[str, dict[str, float]], sizes: Sizes, big_mib: int) -> str:
    """Server CPU per GB (large object) and per object (small), from the server process's threads."""
    columns = [f"PUT {big_mib} MiB CPU-s/GB", f"GET {big_mib} MiB CPU-s/GB",
               f"PUT {sizes.small} B CPU-µs/obj", f"GET {sizes.small} B CPU-µs/obj"]
    rows = []
    for scenario in scenarios:
        plain = results.get(f"{scenario.server}, {PLAINTEXT}")
        cells = []
        for metric in CPU_METRICS:
            value = results[scenario.label][metric]
            cell = f"{value:.3f}" if metric.endswith("big") else f"{value:.0f}"
            if plain is not None and scenario.mode.name != PLAINTEXT and plain[metric] > 0:
                cell += f" ({change(value, plain[metric])})"
            cells.append(cell)
        rows.append([scenario.label, *cells])
    return table(["row", *columns], rows)


def cores_table(scenarios: list[Scenario], results: dict[str, dict[str, float]]) -> str:
    """Server and client CPU per GB of the large GET, the cores that kept busy at the measured rate, and for SSE
    rows the cores they would need to keep busy to reach 95 % of the same server's plaintext rate. With server and
    client on one machine, a mode whose CPU per GB exceeds plaintext's can only keep up by using more cores."""
    columns = ["GET MB/s", "server CPU-s/GB", "client CPU-s/GB", "cores busy", "cores for 95 % of plaintext"]
    rows = []
    for scenario in scenarios:
        measured = results[scenario.label]
        plain = results.get(f"{scenario.server}, {PLAINTEXT}")
        per_gb = measured["cpu_get_big"] + measured[CLIENT_GET_BIG]
        needed = "-"
        if plain is not None and scenario.mode.name != PLAINTEXT:
            needed = f"{per_gb * 0.95 * plain['get_big'] / 1000:.2f}"
        rows.append([scenario.label, f"{measured['get_big']:.0f}", f"{measured['cpu_get_big']:.3f}",
                     f"{measured[CLIENT_GET_BIG]:.3f}", f"{per_gb * measured['get_big'] / 1000:.2f}", needed])
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


def interleave(scenarios: list[Scenario]) -> list[Scenario]:
    """coffer and peer rows of the same mode next to each other, so both see the same moment of machine load."""
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
    parser.add_argument("--small-count", type=int, default=1000, help="number of small objects (default 1000)")
    parser.add_argument("--small-size", type=int, default=4096, help="size of a small object (bytes, default 4096)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections for small objects (default 8)")
    parser.add_argument("--runs", type=int, default=3, help="timed rounds, median reported (default 3)")
    parser.add_argument("--big-gets", type=int, default=3,
                        help="GETs of the large object per round, median taken (default 3)")
    parser.add_argument("--only", action="append", default=[],
                        help="throughput rows whose label (e.g. 'coffer, SSE-C') contains this; repeatable")
    parser.add_argument("--workdir", type=Path, default=REPO / ".cache" / "bench",
                        help="where servers keep their data (default .cache/bench, removed at the end)")
    args = parser.parse_args()

    sizes = Sizes(big=args.big_mib * MiB, small=args.small_size, small_count=args.small_count,
                  concurrency=args.concurrency, runs=args.runs, big_gets=args.big_gets)
    part_size = args.part_mib * MiB
    if args.rss and (part_size > sizes.big or sizes.big % part_size):
        parser.error("--part-mib must divide --big-mib (parts are slices of the large test object)")

    print(f"machine: {machine_description()}")
    print(f"client:  Python http.client, SigV4 UNSIGNED-PAYLOAD, no checksums; small objects over "
          f"{sizes.concurrency} keep-alive connections")
    print(f"method:  rows interleaved; median of {sizes.runs} timed rounds after one warm-up round (each round: one "
          f"large PUT, the median of {sizes.big_gets} large GETs, the small PUTs, the small GETs); "
          f"MB/s = 10^6 bytes/s; server CPU from /proc/PID/task/*/schedstat\n", flush=True)

    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    big_data = os.urandom(sizes.big)
    misses: list[str] = []
    try:
        with Servers(args.workdir) as servers:
            scenarios = interleave(build_scenarios(servers, args.peers))
            chosen = [s for s in scenarios if not args.only or any(o in s.label for o in args.only)]
            if not chosen:
                parser.error("no row matches --only")
            for scenario in scenarios:
                scenario.bucket = create_bucket(scenario.endpoint)

            results = run_throughput(chosen, sizes, big_data)
            text, found = throughput_report(chosen, results, sizes, args.big_mib)
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
