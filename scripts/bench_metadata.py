"""`scripts/bench --metadata`: small-object PUT and GET rates of the metadata engines side by side in one run.

One `coffer` per engine (`--metadata directory` and `--metadata sqlite` by default, or any `--metadata-engine`
list), each with a fresh data directory, measured at several client concurrencies (`--metadata-concurrency`, default
16 and 64 keep-alive connections). The rows are measured in cycles like the throughput table (scripts/bench.py): a
cycle runs one block of PUTs, then later one block of GETs, per engine and concurrency, in an order shuffled each
cycle; every comparison is the median of the per-cycle ratios against the first engine at the same concurrency, so
the machine's drifting load falls on both sides alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics

from bench import (Connections, Cycles, Mode, PLAINTEXT, Scenario, create_bucket, cycle_order, progress, quartiles,
                   small_requests, table, timed_batch)
from bench_servers import Servers


def row_label(engine: str, concurrency: int) -> str:
    return f"{engine}, {concurrency} clients"


def run_metadata(args: argparse.Namespace) -> int:
    engines: list[str] = args.metadata_engine or ["directory", "sqlite"]
    levels: list[int] = args.metadata_concurrency or [16, 64]
    block, cycles_count = args.small_block, args.metadata_cycles
    print(f"client:  Python http.client, SigV4 UNSIGNED-PAYLOAD, no checksums; {args.small_size}-byte objects, "
          f"plaintext")
    print(f"method:  {cycles_count} cycles of {block} PUTs and then of {block} GETs per engine and concurrency, "
          f"rows shuffled each cycle, after a warm-up; rates are medians over the cycles, ratios medians of "
          f"per-cycle ratios against `{engines[0]}` at the same concurrency\n", flush=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    body = os.urandom(args.small_size)
    mode = Mode(PLAINTEXT)
    cycles = Cycles()
    try:
        with Servers(args.workdir) as servers:
            endpoints = {engine: servers.coffer(engine, ("--metadata", engine)) for engine in engines}
            buckets = {engine: create_bucket(endpoint) for engine, endpoint in endpoints.items()}
            rows = [Scenario(engine, mode, endpoints[engine], buckets[engine]) for engine in engines]
            pools = {(row.server, level): Connections(row.endpoint, level) for row in rows for level in levels}
            try:
                requests = {row.server: small_requests(row.bucket, mode, row.server, "small", body) for row in rows}
                warmup = {row.server: small_requests(row.bucket, mode, row.server, "warm-up", body) for row in rows}
                for (engine, level), pool in pools.items():
                    for request in warmup[engine]:
                        timed_batch(pool, range(max(level, block // 2)), request)
                progress("warm-up")
                visits = [(engine, level) for engine in engines for level in levels]
                for metric, which in (("put", 0), ("get", 1)):
                    for cycle in range(cycles_count):
                        for engine, level in cycle_order(visits, cycle):
                            # Every (engine, concurrency) row writes its own keys; GETs read them back.
                            start = (levels.index(level) * cycles_count + cycle) * block
                            timed = timed_batch(pools[(engine, level)], range(start, start + block),
                                                requests[engine][which])
                            cycles.add(row_label(engine, level), metric, timed.rate)
                            cycles.add(row_label(engine, level), f"cpu_{metric}", timed.cpu)
                    progress(f"{metric}: " + ", ".join(
                        f"{row_label(e, c)} {cycles.median(row_label(e, c), metric):.0f}" for e, c in visits))
            finally:
                for pool in pools.values():
                    pool.close()
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    print(metadata_report(cycles, engines, levels), flush=True)
    return 0


def metadata_report(cycles: Cycles, engines: list[str], levels: list[int], what: str = "engine") -> str:
    """The rates of every row (`engines`, each at every concurrency of `levels`) and their ratios to the first,
    `what` naming the rows' column."""
    base = engines[0]
    body = []
    for level in levels:
        for engine in engines:
            label = row_label(engine, level)
            cells = [engine, str(level)]
            for metric in ("put", "get"):
                cells.append(f"{cycles.median(label, metric):,.0f}")
                if engine == base:
                    cells.append("1.00×")
                else:
                    ratios = cycles.ratios(label, row_label(base, level), metric)
                    low, high = quartiles(ratios)
                    cells.append(f"{statistics.median(ratios):.2f}× ({low:.2f}–{high:.2f})")
                cells.append(f"{cycles.median(label, f'cpu_{metric}'):,.0f}")
            body.append(cells)
    return table([what, "clients", "PUT objects/s", f"PUT ÷ {base}", "server CPU-µs/PUT",
                  "GET objects/s", f"GET ÷ {base}", "server CPU-µs/GET"], body)
