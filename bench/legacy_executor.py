"""The benchmark's Python reference: the legacy framework's executor, reduced to its hot path.

The legacy PySpark framework ran, inside `mapPartitions`, one asyncio event loop per partition with one
shared aiohttp session, an `asyncio.Semaphore(concurrency_limit)` around each request, and `gather` over
a batch of rows; Spark then wrote the collected responses. Here each partition is a process (as a Spark
executor core would be) that reads its share of the Parquet input batch by batch, sends one GET per row,
and appends each batch of responses to the same Delta table (deltalake, commit per batch) — the same
work sparkwasm does, so the two rates compare.

    python legacy_executor.py ROWS.parquet BASE_URL DELTA_PATH [--partitions 2] [--concurrency 32]
                              [--batch-size 10000]

Prints one JSON line: rows, ok, failed, elapsed_s, rows_per_s.
"""

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import time
from datetime import datetime, timezone

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import write_deltalake

SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("method", pa.string()),
        ("url", pa.string()),
        ("status_code", pa.int32()),
        ("success", pa.bool_()),
        ("body_text", pa.string()),
        ("error_message", pa.string()),
        ("latency_ms", pa.float64()),
        ("response_timestamp", pa.timestamp("us", tz="UTC")),
    ]
)


async def call(session, sem, method, url, request_id):
    async with sem:
        started = time.perf_counter()
        try:
            async with session.request(method, url) as resp:
                body = await resp.text()
                status, error = resp.status, None
        except Exception as e:  # the legacy executor recorded the error and went on
            body, status, error = None, None, repr(e)
        latency = (time.perf_counter() - started) * 1000
        return {
            "request_id": request_id,
            "method": method,
            "url": url,
            "status_code": status,
            "success": status is not None and 200 <= status < 300,
            "body_text": body,
            "error_message": error,
            "latency_ms": latency,
            "response_timestamp": datetime.now(timezone.utc),
        }


async def partition(index, args):
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    sem = asyncio.Semaphore(args.concurrency)
    ok = failed = 0
    reader = pq.ParquetFile(args.rows)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        for n, batch in enumerate(reader.iter_batches(batch_size=args.batch_size, columns=["id"])):
            if n % args.partitions != index:
                continue
            ids = batch.column(0).to_pylist()
            results = await asyncio.gather(
                *(call(session, sem, "GET", f"{args.base_url}/items/{i}", str(i)) for i in ids)
            )
            write_deltalake(args.delta, pa.Table.from_pylist(results, schema=SCHEMA), mode="append")
            good = sum(r["success"] for r in results)
            ok += good
            failed += len(results) - good
    return ok, failed


def worker(index, args, out):
    out.put(asyncio.run(partition(index, args)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("rows")
    p.add_argument("base_url")
    p.add_argument("delta")
    p.add_argument("--partitions", type=int, default=2)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=10000)
    args = p.parse_args()

    started = time.perf_counter()
    out = mp.Queue()
    procs = [mp.Process(target=worker, args=(i, args, out)) for i in range(args.partitions)]
    for proc in procs:
        proc.start()
    totals = [out.get() for _ in procs]
    for proc in procs:
        proc.join()
    elapsed = time.perf_counter() - started
    ok = sum(t[0] for t in totals)
    failed = sum(t[1] for t in totals)
    rows = ok + failed
    print(json.dumps({"rows": rows, "ok": ok, "failed": failed, "elapsed_s": elapsed,
                      "rows_per_s": rows / elapsed}))
    sys.stdout.flush()
    os._exit(0)  # see tests/read_delta.py: the deltalake wheel may abort in interpreter teardown


if __name__ == "__main__":
    main()
