"""`scripts/bench --cluster`: small-object PUT and GET rates of one Coffer node against three, side by side in one run.

Each deployment is the cluster recipe of docs/operations.md: its own PostgreSQL database (one private PostgreSQL
server serves both) and its own bucket on one SeaweedFS cluster, a cluster key file and a KMS master key file shared
by its nodes. The clients of a row are spread evenly over the deployment's nodes, and the server CPU is the sum over
them. Rows are measured in cycles, shuffled each cycle, and compared by the median of per-cycle ratios against the
single node (as `--metadata` does). Every process shares this machine's cores: on a small machine three nodes show
what the cluster costs, not how it scales.
"""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path

from bench import (Connections, Cycles, Mode, PLAINTEXT, SSE_S3, create_bucket, cycle_order, progress, small_requests,
                   timed_batch)
from bench_metadata import metadata_report, row_label
from bench_servers import Endpoint, Servers

DEPLOYMENTS = {"1 node": 1, "3 nodes": 3}


def private_file(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    path.chmod(0o600)
    return path


def deploy(servers: Servers, postgres, weed: Endpoint, label: str, count: int, directory: Path) -> list[Endpoint]:
    """`count` nodes sharing a new database and a new data bucket."""
    directory.mkdir(parents=True)
    cluster_key = private_file(directory / "cluster.key", os.urandom(32))
    master_key = private_file(directory / "kms-master.key", os.urandom(32).hex().encode())
    args = ("--metadata", "postgres", "--metadata-url", postgres.url_for(postgres.create_database()),
            "--cluster-key-file", str(cluster_key), "--kms-master-key-file", str(master_key),
            "--data-engine", "s3", "--data-s3-endpoint", weed.url, "--data-s3-bucket", create_bucket(weed))
    env = {"COFFER_DATA_S3_ACCESS_KEY_ID": weed.creds.access_key,
           "COFFER_DATA_S3_SECRET_ACCESS_KEY": weed.creds.secret_key}
    return [servers.coffer(f"{label} #{number}", args, env) for number in range(1, count + 1)]


def run_cluster(args: argparse.Namespace) -> int:
    levels: list[int] = args.metadata_concurrency or [48]
    block, cycles_count = args.small_block, args.metadata_cycles
    modes = [Mode(PLAINTEXT), Mode(SSE_S3, put_headers={"x-amz-server-side-encryption": "AES256"})]
    print(f"client:  Python http.client, SigV4 UNSIGNED-PAYLOAD, no checksums; {args.small_size}-byte objects; "
          f"clients spread evenly over a deployment's nodes")
    print(f"method:  {cycles_count} cycles of {block} PUTs and then of {block} GETs per deployment, mode and "
          f"concurrency, rows shuffled each cycle, after a warm-up; rates are medians over the cycles, ratios medians "
          f"of per-cycle ratios against one node; server CPU summed over the nodes\n", flush=True)
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    body = os.urandom(args.small_size)
    cycles = Cycles()
    try:
        with Servers(args.workdir) as servers:
            weed = servers.seaweedfs()
            postgres = servers.postgres()
            nodes = {label: deploy(servers, postgres, weed, label, count, args.workdir / "keys" / str(count))
                     for label, count in DEPLOYMENTS.items()}
            rows = [(f"{label}, {mode.name}", label, mode) for mode in modes for label in DEPLOYMENTS]
            buckets = {label: create_bucket(endpoints[0]) for label, endpoints in nodes.items()}
            pools = {(label, level): Connections(nodes[label], level) for label in DEPLOYMENTS for level in levels}
            try:
                requests = {row: small_requests(buckets[label], mode, row, mode.name, body) for row, label, mode in rows}
                for (label, level), pool in pools.items():
                    warm_put, _ = small_requests(buckets[label], modes[0], label, "warm-up", body)
                    timed_batch(pool, range(max(level, block // 2)), warm_put)
                progress("warm-up")
                visits = [(row, label, level) for row, label, _ in rows for level in levels]
                for metric, which in (("put", 0), ("get", 1)):
                    for cycle in range(cycles_count):
                        for row, label, level in cycle_order(visits, cycle):
                            start = (levels.index(level) * cycles_count + cycle) * block
                            timed = timed_batch(pools[(label, level)], range(start, start + block),
                                                requests[row][which])
                            cycles.add(row_label(row, level), metric, timed.rate)
                            cycles.add(row_label(row, level), f"cpu_{metric}", timed.cpu)
                    progress(f"{metric}: " + ", ".join(
                        f"{row_label(row, level)} {cycles.median(row_label(row, level), metric):.0f}"
                        for row, _, level in visits))
            finally:
                for pool in pools.values():
                    pool.close()
    finally:
        shutil.rmtree(args.workdir, ignore_errors=True)
    for mode in modes:
        print(f"\n{mode.name}:")
        print(metadata_report(cycles, [f"{label}, {mode.name}" for label in DEPLOYMENTS], levels, "deployment"),
              flush=True)
    return 0
