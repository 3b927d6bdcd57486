"""Listing benchmark (`scripts/bench --listing`): how long a restarted server takes to answer its first listing of a
large bucket, how fast it lists once warm, and how much memory the bucket costs it.

A bucket is filled with `--listing-keys` small objects (0-100 bytes) under keys shaped like log files,
`logs/2026/12/DD/host-HHH/file-NNNNNNN.json` (10 days × 100 hosts), so a prefix + delimiter listing rolls up real
"directories". Then each server is stopped and started again on its data directory, and the bench times, from the
moment the process is started, its first answer to each of three ListObjectsV2 requests — the first page of the
bucket, one "directory" in the middle of the key space (prefix + delimiter), and a page that starts after a key deep
in the bucket — and to a HeadBucket, which lists nothing (the floor any first answer pays): one restart per request,
so each is the first request of its process. On the last restart of a round the server stays up for the warm
listings: the same three, several times each. After its HeadBucket the bench waits for the server to go idle: the
work it starts by itself (today a garbage collection that reads every object record) is done. The server's RSS is
read from /proc/PID/status right after it listens, after its first listing and after the warm listings; in the
first round the bench also walks the whole bucket page by page, which checks that it holds every key.

Several servers can be compared in one run (`--listing-server LABEL=COMMAND`, repeatable): a binary and its extra
`coffer server` arguments, e.g. the same build with another metadata engine. Each has its own data directory under
`--listing-data-dir`, filled by itself, reused and topped up by later runs (a marker file records how many keys it
holds); without that option the data lives under the bench's work directory and is removed at the end. Rounds visit
the servers, and within a server its four restarts, in a shuffled order; a ratio between two servers is the median
of their per-round ratios.

The fill talks plain HTTP/1.1 over sockets and signs with a SigV4 signer of its own for its one request shape (PUT,
UNSIGNED-PAYLOAD): botocore's signer and http.client cost ~300 µs of Python CPU per request on the two cores the
server needs, this ~80 µs. The server checks every signature, so a wrong one fails the fill with a 403. Listings go
through the bench's ordinary client (botocore's signer, http.client).
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import html
import json
import os
import re
import shlex
import shutil
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable
from urllib.parse import quote, urlencode, urlsplit

from bench import Client, Reply, create_bucket, cycle_order, expect, progress, proc_status_kib, table
from bench_servers import Endpoint
from harness import REGION, ROOT, START_TIMEOUT, CofferServer, coffer_binary, free_port, log_tail, sigv4_signing_key

DAYS = 10
HOSTS = 100
MAX_KEYS = 10_000_000      # file numbers have 7 digits: past them, text order would no longer be number order
MIN_KEYS = 1000            # every listing below needs a full first page and a key on day 09, host 050
MAX_BODY = 100
BODIES = os.urandom(MAX_BODY)
FILL_BATCH = 10_000        # keys between two progress lines and marker updates
MARKER = "listing-bench.json"
UNSIGNED = "UNSIGNED-PAYLOAD"
SIGNED_HEADERS = "host;x-amz-content-sha256;x-amz-date"
LABEL = re.compile(r"[A-Za-z0-9._-]+")
KEY_FORMAT = "key n: logs/2026/12/DD/host-HHH/file-NNNNNNN.json, HHH = n % 100, DD = n // 100 % 10 + 1, NNNNNNN = n"


# ---- the bucket's keys ------------------------------------------------------------------------------------------

def object_key(number: int) -> str:
    """Key number `number` (0-based): consecutive numbers go to different hosts, then different days."""
    day = number // HOSTS % DAYS + 1
    return f"logs/2026/12/{day:02d}/host-{number % HOSTS:03d}/file-{number:07d}.json"


def first_number(day: int, host: int) -> int:
    """The lowest key number under `day`, `host`; the next ones follow every HOSTS × DAYS numbers."""
    return host + HOSTS * (day - 1)


def keys_under(day: int, host: int, count: int) -> int:
    """How many of the first `count` keys are under `day`, `host`."""
    return max(0, -(-(count - first_number(day, host)) // (HOSTS * DAYS)))


def body_of(number: int) -> bytes:
    return BODIES[:number % (MAX_BODY + 1)]


@dataclass(frozen=True)
class Probe:
    """A request to the bucket — a ListObjectsV2 with `params`, or with none a HeadBucket — and how many keys and
    common prefixes its answer must hold."""

    name: str
    params: dict[str, str] | None
    keys: int = 0
    prefixes: int = 0

    @property
    def method(self) -> str:
        return "GET" if self.params is not None else "HEAD"

    def path(self, bucket: str) -> str:
        if self.params is None:
            return f"/{bucket}"
        return f"/{bucket}?" + urlencode(sorted({"list-type": "2", **self.params}.items()), quote_via=quote, safe="")

    def check(self, reply: Reply, server: str):
        expect(reply, 200, f"{self.name} ({server})")
        if self.params is None:
            return
        keys, prefixes = reply.body.count(b"<Key>"), reply.body.count(b"<CommonPrefixes>")
        if (keys, prefixes) != (self.keys, self.prefixes):
            raise SystemExit(f"bench: {self.name} ({server}) returned {keys} keys and {prefixes} common prefixes, "
                             f"expected {self.keys} and {self.prefixes}: is the bucket filled?")


# The first request of a restarted server that lists nothing: what any first answer costs.
HEAD_BUCKET = Probe("HeadBucket", None)


def listings(count: int) -> list[Probe]:
    """The first page; day 05 listed as a directory (its hosts rolled up); the page after the middle key of day 09,
    host 050 (~85 % into the bucket)."""
    middle_day = DAYS // 2
    hosts = sum(1 for host in range(HOSTS) if keys_under(middle_day, host, count))
    deep_day, deep_host = DAYS - 1, HOSTS // 2
    position = keys_under(deep_day, deep_host, count) // 2
    start_after = object_key(first_number(deep_day, deep_host) + HOSTS * DAYS * position)
    after = keys_under(deep_day, deep_host, count) - position - 1
    after += sum(keys_under(day, host, count) for day in range(1, DAYS + 1) for host in range(HOSTS)
                 if (day, host) > (deep_day, deep_host))
    return [
        Probe("first page", {}, keys=min(count, 1000)),
        Probe("prefix + delimiter", {"prefix": f"logs/2026/12/{middle_day:02d}/", "delimiter": "/"}, prefixes=hosts),
        Probe("start-after deep", {"start-after": start_after}, keys=min(after, 1000)),
    ]


# ---- the fill's client ------------------------------------------------------------------------------------------

class PutSigner:
    """SigV4 for one request shape: a PUT with an unsigned payload and no query, to a path of unreserved characters
    and slashes (the bench's bucket and keys), which is then its own canonical form."""

    def __init__(self, endpoint: Endpoint):
        self.host = urlsplit(endpoint.url).netloc
        self.access_key = endpoint.creds.access_key
        self.secret_key = endpoint.creds.secret_key
        self.keys: dict[str, bytes] = {}

    def head(self, path: str, length: int) -> bytes:
        amz_date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        day = amz_date[:8]
        key = self.keys.get(day) or self.keys.setdefault(day, sigv4_signing_key(self.secret_key, day))
        scope = f"{day}/{REGION}/s3/aws4_request"
        canonical = "\n".join(["PUT", path, "", f"host:{self.host}", f"x-amz-content-sha256:{UNSIGNED}",
                               f"x-amz-date:{amz_date}", "", SIGNED_HEADERS, UNSIGNED])
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        return (f"PUT {path} HTTP/1.1\r\nHost: {self.host}\r\nX-Amz-Date: {amz_date}\r\n"
                f"X-Amz-Content-SHA256: {UNSIGNED}\r\nContent-Length: {length}\r\n"
                f"Authorization: AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
                f"SignedHeaders={SIGNED_HEADERS}, Signature={signature}\r\n\r\n").encode()


class RawConnection:
    """One keep-alive HTTP/1.1 connection over a plain socket: a request goes out in one send, the answer's status
    and its Content-Length-framed body come back."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.address = (parts.hostname, parts.port)
        self.sock: socket.socket | None = None
        self.received = bytearray()

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        """Sends `request` and reads its answer. A connection the server closed meanwhile (idle keep-alive) is opened
        again and the request sent once more: the fill's PUTs may be repeated."""
        for attempt in range(2):
            if self.sock is None:
                self.sock = socket.create_connection(self.address, timeout=600)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.sock.sendall(request)
                return self._answer()
            except ConnectionError:
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _answer(self) -> tuple[int, bytes]:
        data = self.received
        while (end := data.find(b"\r\n\r\n")) < 0:
            self._receive()
        lines = bytes(data[:end]).decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise SystemExit(f"bench: an answer without Content-Length: {lines[0]}")
        start = end + 4
        while len(data) < start + length:
            self._receive()
        body = bytes(data[start:start + length])
        del data[:start + length]
        return status, body

    def _receive(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise ConnectionResetError("the server closed the connection")
        self.received += chunk

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.received.clear()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process so far, threads that ended included (/proc/PID/stat, clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Fill:
    keys: int               # keys PUT
    seconds: float
    server_cpu: float       # CPU-s of the server process
    client_cpu: float       # CPU-s of the bench process

    @property
    def rate(self) -> float:
        return self.keys / self.seconds


def fill(endpoint: Endpoint, bucket: str, numbers: range, connections: int,
         after_batch: Callable[[int, float], None]) -> Fill:
    """PUTs keys `numbers` over `connections` keep-alive connections, one thread each, in batches of FILL_BATCH;
    `after_batch(keys done, seconds)` runs after each batch (every key below `keys done` is then stored)."""
    signer = PutSigner(endpoint)
    pool = [RawConnection(endpoint.url) for _ in range(connections)]

    def put(connection: RawConnection, number: int):
        body = body_of(number)
        status, answer = connection.exchange(signer.head(f"/{bucket}/{object_key(number)}", len(body)) + body)
        if status != 200:
            raise SystemExit(f"bench: PUT {object_key(number)} answered HTTP {status}: {answer[:300]!r}")

    def work(batch: range, worker: int):
        for number in batch[worker::connections]:
            put(pool[worker], number)

    server_started = process_cpu_seconds(endpoint.pid)
    client_started = time.process_time()
    started = time.perf_counter()
    try:
        with ThreadPoolExecutor(connections) as threads:
            for first in range(numbers.start, numbers.stop, FILL_BATCH):
                batch = range(first, min(first + FILL_BATCH, numbers.stop))
                for done in threads.map(lambda worker, batch=batch: work(batch, worker), range(connections)):
                    del done
                after_batch(batch.stop, time.perf_counter() - started)
    finally:
        for connection in pool:
            connection.close()
    return Fill(len(numbers), time.perf_counter() - started, process_cpu_seconds(endpoint.pid) - server_started,
                time.process_time() - client_started)


# ---- servers and their data -------------------------------------------------------------------------------------

@dataclass
class ServerSpec:
    """A server to measure: `coffer server` from `binary` with `args`, on its own data directory."""

    label: str
    binary: Path
    args: list[str]
    root: Path             # the data directory's parent, holding the marker

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def command(self) -> str:
        return shlex.join([str(self.binary), "server", *self.args])


def server_specs(values: list[str], data_root: Path) -> list[ServerSpec]:
    """`LABEL=BINARY [ARGS…]` values; none: COFFER_BIN (or the release build) as `coffer`."""
    specs = []
    for value in values or [f"coffer={coffer_binary()}"]:
        label, sep, command = value.partition("=")
        words = shlex.split(command)
        if not sep or not LABEL.fullmatch(label) or not words:
            raise SystemExit(f"bench: --listing-server {value!r}: expected LABEL=BINARY [ARGS…], LABEL of letters, "
                             f"digits, '.', '_', '-'")
        binary = Path(words[0]).resolve()
        if not binary.is_file():
            raise SystemExit(f"bench: --listing-server {label}: {binary} is not a file")
        specs.append(ServerSpec(label, binary, words[1:], data_root / label))
    if len({spec.label for spec in specs}) != len(specs):
        raise SystemExit("bench: two --listing-server values have the same label")
    return specs


@dataclass
class Marker:
    """What a server's data directory holds, kept next to it: the bucket, how many of the bench's keys are stored
    (all numbers below `keys`), and every fill that added keys."""

    bucket: str = ""
    keys: int = 0
    fills: list[dict] = field(default_factory=list)

    @staticmethod
    def load(spec: ServerSpec) -> "Marker":
        path = spec.root / MARKER
        if not path.exists():
            return Marker()
        saved = json.loads(path.read_text())
        if saved.get("key_format") != KEY_FORMAT:
            raise SystemExit(f"bench: {spec.root} was filled with other keys; use another --listing-data-dir")
        return Marker(saved["bucket"], saved["keys"], saved["fills"])

    def save(self, spec: ServerSpec):
        path = spec.root / MARKER
        temp = path.with_suffix(".tmp")
        temp.write_text(json.dumps({"bucket": self.bucket, "keys": self.keys,
                                    "key_format": KEY_FORMAT,
                                    "fills": self.fills}, indent=1) + "\n")
        temp.replace(path)


class Servers:
    """Starts one server at a time on its data directory, with its log under the bench's work directory."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.running: CofferServer | None = None
        self.count = 0

    def new(self, spec: ServerSpec) -> CofferServer:
        self.stop()
        self.count += 1
        sandbox = self.workdir / f"{spec.label}-{self.count}"
        sandbox.mkdir(parents=True)
        self.running = CofferServer(sandbox=sandbox, data_dir=spec.data_dir, port=free_port(), root=ROOT,
                                    extra_args=spec.args, binary=spec.binary)
        return self.running

    def stop(self):
        if self.running is not None:
            server, self.running = self.running, None
            server.stop_and_check()


def endpoint_of(spec: ServerSpec, server: CofferServer) -> Endpoint:
    return Endpoint(name=spec.label, url=server.endpoint, creds=server.root, pid=server.process.pid)


def prepare(spec: ServerSpec, servers: Servers, count: int, connections: int) -> tuple[Marker, Fill | None]:
    """Brings the server's bucket to `count` keys: creates it on first use, PUTs the keys it lacks."""
    marker = Marker.load(spec)
    if marker.keys > count:
        raise SystemExit(f"bench: {spec.root} holds {marker.keys} keys, more than --listing-keys {count}; use "
                         f"another --listing-data-dir")
    if marker.keys == count:
        return marker, None
    spec.root.mkdir(parents=True, exist_ok=True)
    server = servers.new(spec).start()
    endpoint = endpoint_of(spec, server)
    if not marker.bucket:
        marker.bucket = create_bucket(endpoint)
        marker.save(spec)
    first = marker.keys
    load = os.getloadavg()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    progress(f"{spec.label}: filling {marker.bucket} from {first} to {count} keys over {connections} connections")

    def saved(done: int, seconds: float):
        marker.keys = done
        marker.save(spec)
        rate = (done - first) / seconds
        progress(f"{spec.label}: {done}/{count} keys, {rate:.0f} keys/s, {(count - done) / rate / 60:.1f} min to go, "
                 f"load {os.getloadavg()[0]:.1f}")

    result = fill(endpoint, marker.bucket, range(first, count), connections, saved)
    servers.stop()
    marker.fills.append({"from": first, "to": count, "seconds": round(result.seconds, 1),
                         "keys_per_s": round(result.rate), "connections": connections,
                         "server_cpu_us_per_put": round(result.server_cpu / result.keys * 1e6),
                         "client_cpu_us_per_put": round(result.client_cpu / result.keys * 1e6),
                         "load_at_start": [round(value, 1) for value in load],
                         "server": spec.command, "date": date})
    marker.save(spec)
    return marker, result


def drop_caches():
    """Writes dirty pages out and drops the page cache, dentries and inodes of the whole machine (root only)."""
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3")


# ---- measurements -----------------------------------------------------------------------------------------------

class Values:
    """Measured values by server label and metric, in the order measured (one per round, or per restart)."""

    def __init__(self):
        self.values: dict[str, dict[str, list[float]]] = {}

    def add(self, label: str, metric: str, value: float):
        self.values.setdefault(label, {}).setdefault(metric, []).append(value)

    def get(self, label: str, metric: str) -> list[float]:
        return self.values.get(label, {}).get(metric, [])


def first_answer(spec: ServerSpec, servers: Servers, probe: Probe, bucket: str, values: Values,
                 cold: bool) -> tuple[CofferServer, Client, float]:
    """Starts the server and sends `probe` as soon as it accepts a connection: records the milliseconds from the
    start of the process to the first accepted connection and to the answer, the server's CPU until then, and its
    RSS at both moments. Returns the running server, the connection and when the process was started."""
    if cold:
        drop_caches()
    server = servers.new(spec)
    started = time.perf_counter()
    server.launch()
    endpoint = endpoint_of(spec, server)
    client = Client(endpoint)
    while True:
        try:
            client.connection.connect()
            break
        except ConnectionRefusedError:
            if server.process.poll() is not None:
                raise SystemExit(f"bench: {spec.label} exited with {server.process.returncode}:\n"
                                 f"{log_tail(server.log_path)}")
            if time.perf_counter() - started > START_TIMEOUT:
                raise SystemExit(f"bench: {spec.label} did not listen within {START_TIMEOUT}s")
            time.sleep(0.001)
    listening = time.perf_counter() - started
    rss_listening = proc_status_kib(endpoint.pid, "VmRSS")
    reply = client.fetch(probe.method, probe.path(bucket))
    answered = time.perf_counter() - started
    cpu = process_cpu_seconds(endpoint.pid)
    probe.check(reply, spec.label)
    values.add(spec.label, "listening", listening * 1e3)
    values.add(spec.label, f"first: {probe.name}", answered * 1e3)
    values.add(spec.label, f"cpu: {probe.name}", cpu)
    values.add(spec.label, "rss: listening", rss_listening / 1024)
    if probe is not HEAD_BUCKET:
        values.add(spec.label, "rss: first listing", proc_status_kib(endpoint.pid, "VmRSS") / 1024)
    progress(f"{spec.label}: listening after {listening * 1e3:.0f} ms, {probe.name} answered after "
             f"{answered * 1e3:.0f} ms ({cpu:.2f} CPU-s)")
    return server, client, started


IDLE_WINDOW = 1.0       # seconds in which the server must spend under IDLE_CPU seconds of CPU to count as idle
IDLE_CPU = 0.02
IDLE_LIMIT = 1800.0


def until_idle(spec: ServerSpec, server: CofferServer, started: float, values: Values):
    """Waits for the server to go idle after its start — the work it starts by itself, such as a garbage collection
    of the data directory, done — and records the seconds from the start of the process to the beginning of the
    first quiet IDLE_WINDOW, and the CPU it spent until then."""
    pid = server.process.pid
    readings = [(time.perf_counter(), process_cpu_seconds(pid))]
    while True:
        time.sleep(0.1)
        now = (time.perf_counter(), process_cpu_seconds(pid))
        readings.append(now)
        window = [reading for reading in readings if reading[0] >= now[0] - IDLE_WINDOW - 0.05]
        if now[0] - window[0][0] >= IDLE_WINDOW and now[1] - window[0][1] < IDLE_CPU:
            break
        if now[0] - started > IDLE_LIMIT:
            raise SystemExit(f"bench: {spec.label} was still busy {IDLE_LIMIT:.0f} s after its start")
    values.add(spec.label, "idle", window[0][0] - started)
    values.add(spec.label, "cpu: idle", window[0][1])
    progress(f"{spec.label}: idle {window[0][0] - started:.1f} s after its start ({window[0][1]:.2f} CPU-s)")


def steady_state(spec: ServerSpec, client: Client, bucket: str, pages: list[Probe], repeats: int, values: Values):
    """`repeats` visits of every listing (shuffled each visit) on the warm server: the median per listing."""
    seconds: dict[str, list[float]] = {page.name: [] for page in pages}
    for visit in range(repeats):
        for page in cycle_order(pages, visit):
            started = time.perf_counter()
            reply = client.fetch(page.method, page.path(bucket))
            seconds[page.name].append(time.perf_counter() - started)
            page.check(reply, spec.label)
    for name, measured in seconds.items():
        values.add(spec.label, f"warm: {name}", statistics.median(measured) * 1e3)


NEXT_TOKEN = re.compile(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>")


def walk(spec: ServerSpec, client: Client, bucket: str, count: int, values: Values):
    """Lists the whole bucket, 1000 keys a page; it must hold exactly `count` keys."""
    keys = pages = 0
    token = None
    started = time.perf_counter()
    while True:
        params = {"list-type": "2", **({"continuation-token": token} if token else {})}
        reply = client.fetch("GET", f"/{bucket}?" + urlencode(sorted(params.items()), quote_via=quote, safe=""))
        expect(reply, 200, f"listing page {pages + 1} ({spec.label})")
        keys += reply.body.count(b"<Key>")
        pages += 1
        match = NEXT_TOKEN.search(reply.body)
        if match is None:
            break
        token = html.unescape(match.group(1).decode())
    seconds = time.perf_counter() - started
    if keys != count:
        raise SystemExit(f"bench: {spec.label}: the bucket lists {keys} keys, expected {count}")
    values.add(spec.label, "walk", seconds)
    values.add(spec.label, "walk rate", keys / seconds)
    progress(f"{spec.label}: listed all {keys} keys in {pages} pages, {seconds:.1f} s")


def measure(specs: list[ServerSpec], servers: Servers, buckets: dict[str, str], count: int, rounds: int,
            repeats: int, cold: bool) -> Values:
    """`rounds` rounds; in each, every server (shuffled) is restarted once per probe (HeadBucket and the listings,
    shuffled), timed to its answer to that first request; after its last restart of the round come the warm
    listings, and in the first round the walk of the whole bucket, each followed by an RSS reading."""
    pages = listings(count)
    values = Values()
    for round_number in range(rounds):
        for spec in cycle_order(specs, round_number):
            bucket = buckets[spec.label]
            order = cycle_order([HEAD_BUCKET, *pages], round_number)
            for probe in order:
                server, client, started = first_answer(spec, servers, probe, bucket, values, cold)
                try:
                    if probe is HEAD_BUCKET:
                        until_idle(spec, server, started, values)
                        client.close()  # idle for longer than the server keeps a connection: the next request opens one
                    if probe is order[-1]:
                        pid = server.process.pid
                        steady_state(spec, client, bucket, pages, repeats, values)
                        values.add(spec.label, "rss: warm", proc_status_kib(pid, "VmRSS") / 1024)
                        if round_number == 0:
                            walk(spec, client, bucket, count, values)
                            values.add(spec.label, "rss: walk", proc_status_kib(pid, "VmRSS") / 1024)
                            values.add(spec.label, "rss: peak", proc_status_kib(pid, "VmHWM") / 1024)
                finally:
                    client.close()
                    servers.stop()
    return values


# ---- report -----------------------------------------------------------------------------------------------------

def fill_report(specs: list[ServerSpec], prepared: dict[str, tuple[Marker, Fill | None]]) -> str:
    rows = []
    for spec in specs:
        marker, now = prepared[spec.label]
        for entry in marker.fills:
            rows.append([spec.label, f"{entry['from']:,} → {entry['to']:,}", entry["date"], f"{entry['seconds']:.0f}",
                         str(entry["keys_per_s"]), str(entry["server_cpu_us_per_put"]),
                         str(entry["client_cpu_us_per_put"]), str(entry["connections"]),
                         "/".join(f"{value:.1f}" for value in entry["load_at_start"]),
                         "this run" if now is not None and entry is marker.fills[-1] else "earlier"])
    return table(["server", "keys", "started", "seconds", "keys/s", "server CPU-µs/PUT", "client CPU-µs/PUT",
                  "connections", "load 1/5/15 min at start", "when"], rows)


def cell(numbers: list[float], digits: int) -> str:
    """The median, with the lowest and highest value in brackets when there are several."""
    if not numbers:
        return "-"
    text = f"{statistics.median(numbers):,.{digits}f}"
    if len(numbers) > 1:
        text += f" ({min(numbers):,.{digits}f} … {max(numbers):,.{digits}f})"
    return text


def result_report(specs: list[ServerSpec], values: Values, count: int, pages: list[Probe]) -> str:
    probes = [HEAD_BUCKET, *pages]
    metrics: list[tuple[str, str, int]] = [("listening", "start → listening (ms)", 0)]
    metrics += [(f"first: {p.name}", f"start → first answer: {p.name} (ms)", 0) for p in probes]
    metrics += [(f"cpu: {p.name}", f"server CPU until then: {p.name} (s)", 2) for p in probes]
    metrics += [("idle", "start → idle, after a first HeadBucket (s)", 1),
                ("cpu: idle", "server CPU until idle (s)", 2)]
    metrics += [(f"warm: {p.name}", f"warm: {p.name} (ms)", 1) for p in pages]
    metrics += [("walk", f"walk of all {count:,} keys (s)", 2), ("walk rate", "walk (keys/s)", 0),
                ("rss: listening", "RSS right after start (MiB)", 1),
                ("rss: first listing", "RSS after the first listing (MiB)", 1),
                ("rss: warm", "RSS after the warm listings (MiB)", 1),
                ("rss: walk", "RSS after the walk (MiB)", 1), ("rss: peak", "peak RSS, VmHWM (MiB)", 1)]
    header = ["measure", *(spec.label for spec in specs)]
    base = specs[0].label
    header += [f"{spec.label} / {base}" for spec in specs[1:]]
    rows = []
    for metric, title, digits in metrics:
        row = [title, *(cell(values.get(spec.label, metric), digits) for spec in specs)]
        for spec in specs[1:]:
            ratios = [value / reference for value, reference in zip(values.get(spec.label, metric),
                                                                      values.get(base, metric)) if reference]
            row.append(f"{statistics.median(ratios):.2f}x" if ratios else "-")
        rows.append(row)
    growth = ["RSS per key: (after the warm listings − right after start) / keys (bytes)"]
    for spec in specs:
        after = statistics.median(values.get(spec.label, "rss: warm"))
        start = statistics.median(values.get(spec.label, "rss: listening"))
        growth.append(f"{(after - start) * 1024 * 1024 / count:.0f}")
    rows.append(growth + ["-"] * (len(specs) - 1))
    return table(header, rows)


# ---- main -------------------------------------------------------------------------------------------------------

def run_listing(args: argparse.Namespace) -> int:
    count = args.listing_keys
    if not MIN_KEYS <= count <= MAX_KEYS:
        raise SystemExit(f"bench: --listing-keys must be between {MIN_KEYS} and {MAX_KEYS}")
    if min(args.listing_rounds, args.listing_repeats, args.listing_connections) < 1:
        raise SystemExit("bench: --listing-rounds, --listing-repeats and --listing-connections must be at least 1")
    workdir = args.workdir.resolve()
    kept = args.listing_data_dir.resolve() if args.listing_data_dir else None
    if kept is not None and kept.is_relative_to(workdir):
        raise SystemExit("bench: --listing-data-dir must not be inside --workdir (which is removed)")
    specs = server_specs(args.listing_server, kept or workdir / "listing")
    pages = listings(count)
    print(f"bucket:  {count:,} keys like {object_key(count - 1)}, 0-{MAX_BODY} bytes each; data "
          f"{'kept in ' + str(kept) if kept else 'removed at the end'}")
    for spec in specs:
        print(f"server:  {spec.label}: {spec.command}")
    print(f"fill:    PUTs over {args.listing_connections} keep-alive connections (raw HTTP/1.1, SigV4 "
          f"UNSIGNED-PAYLOAD), batches of {FILL_BATCH:,}")
    print(f"method:  {args.listing_rounds} rounds; in each, every server is restarted once per listing and once for "
          f"a HeadBucket (order shuffled) and timed from the start of its process to the answer to that first request; "
          f"then "
          f"{args.listing_repeats} warm visits of every listing (median); the first round also lists the whole "
          f"bucket; RSS from /proc/PID/status; {'cold' if args.listing_drop_caches else 'warm'} page cache at start")
    for page in pages:
        print(f"listing: {page.name}: GET {page.path('BUCKET')} → {page.keys} keys, {page.prefixes} common prefixes")
    print(flush=True)

    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    servers = Servers(workdir / "servers")
    try:
        prepared = {spec.label: prepare(spec, servers, count, args.listing_connections) for spec in specs}
        print("Fill of each server's bucket (every fill recorded in its data directory):\n")
        print(fill_report(specs, prepared) + "\n", flush=True)
        buckets = {label: marker.bucket for label, (marker, _) in prepared.items()}
        values = measure(specs, servers, buckets, count, args.listing_rounds, args.listing_repeats,
                         args.listing_drop_caches)
        print(f"Listings of {count:,} keys (median; in brackets: lowest … highest"
              f"{'; ratios: median of the per-round ratios' if len(specs) > 1 else ''}):\n")
        print(result_report(specs, values, count, pages) + "\n")
        print("load average at the end: " + ", ".join(f"{value:.1f}" for value in os.getloadavg()), flush=True)
    finally:
        servers.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
