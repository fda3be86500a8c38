"""`just bench`: sparkwasm end to end beside a raw load generator and the Python reference, in one run.

Called by scripts/bench.sh (which builds the release binaries and installs wrk and aiohttp):

    python bench/run.py BIN_DIR [--rows 200000] [--memory-rows 2000000] [--connections 64]

1. `testkit serve` on 127.0.0.1 is the fast endpoint every contestant hits (GET /items/{id}, a small JSON
   echo). The machine's cores are shared by the server and the client in every measurement alike.
2. wrk with as many connections as sparkwasm has consumers: the endpoint's ceiling.
3. sparkwasm (and, with Azurite installed, the same run landing in Delta on Azurite): ROWS Parquet rows → one GET per row → a Delta table, one commit per 10k rows (wall clock of
   the whole process: start, read, requests, commits, exit). Each sparkwasm configuration runs three
   times; the run with the median CPU time is reported.
4. The Python reference (bench/legacy_executor.py): the same work the legacy way (asyncio + aiohttp).
5. Plugins: sparkwasm again with the legacy default chain (retry, logging, timing, json_body as WASM
   plugins): rows/s, and the CPU each plugin hop adds per request ((CPU with − CPU without) / rows / 4);
   then with four `passthrough` fixtures (a guest that asks for every hook and changes nothing): what a
   hop costs the host alone. Then both chains in isolation (host/examples/hop.rs: no network, no sink,
   one thread), where a hop's cost is not mixed with the cache and scheduler effects of a busy 2-core
   machine. Then the legacy chain with 1,000, 4,000 (the legacy default, 200 × 20) and 10,000 requests in
   flight against an endpoint that answers after 50 ms, beside wrk with as many connections: rows/s and
   peak RSS (memory must not grow with requests in flight).
6. Adaptive concurrency: a capacity-limited endpoint (32 requests at a time, 20 ms each, 429 beyond),
   fixed concurrency too low (2 × 4) and too high (2 × 64) against `concurrency: adaptive`: rows/s
   against the capacity, and the share of requests answered 429 (from the table).
7. Memory: sparkwasm's peak RSS on ROWS and on MEMORY_ROWS rows (10× the input, same batch size): memory is
   bounded by batch_size and the queues, not by the input.

Prints a Markdown table and writes it into docs/benchmark.md (between its results markers, with the chart
below it), the figures to bench/results.json, their chart (rows/s against requests in flight, bench/chart.py)
to bench/throughput.svg and one headline line into README.md (between its headline markers);
first it prints what moved against the committed bench/results.json. `run.py --headline` rewrites the
README's line from the committed results alone.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from chart import write_svg

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "bench.yaml"
LEGACY_CHAIN = """middleware:
  - type: retry
  - type: logging
  - type: timing
  - type: json_body
"""


def child_run(cmd, env=None):
    """Runs cmd to completion; returns (wall seconds, cpu seconds, peak RSS MiB, stdout, stderr) of
    that one child (os.wait4 gives its own rusage, not the maximum over every child so far)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({proc.returncode}):\n{stdout}\n{stderr}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout, stderr


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(bin_dir):
    proc = subprocess.Popen([bin_dir / "testkit", "serve"], stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    if not url.startswith("http"):
        sys.exit("testkit serve did not print its URL")
    return proc, url


def wrk(url, connections, seconds, path="/items/1"):
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", f"{url}{path}"],
        capture_output=True, text=True, check=True,
    ).stdout
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        sys.exit(f"could not read wrk's output:\n{out}")
    return float(m.group(1))


def sparkwasm(bin_dir, url, rows_file, sink, connections, config=CONFIG, extra_env=None):
    env = dict(os.environ, BENCH_API=url, BENCH_ROWS=str(rows_file), BENCH_SINK=str(sink),
               BENCH_CONSUMERS=str(connections // 2), RUST_LOG="warn", **(extra_env or {}))
    wall, cpu, rss, out, err = child_run([bin_dir / "sparkwasm", "run", config], env)
    m = re.search(r"rows\s+(\d+)", out + err)
    rows = int(m.group(1)) if m else 0
    return rows, wall, cpu, rss


def median_run(bin_dir, url, rows_file, sink, connections, config=CONFIG, runs=3, extra_env=None):
    """sparkwasm `runs` times (each into a fresh sink); the run with the median CPU time. One run's CPU
    varies by ±20% on a 2-core machine that also serves the requests."""
    results = sorted(
        (sparkwasm(bin_dir, url, rows_file, f"{sink}-{i}", connections, config, extra_env)
         for i in range(runs)),
        key=lambda r: r[2],
    )
    return results[len(results) // 2]


def python_reference(python, url, rows_file, sink, connections):
    wall, _, _, out, _ = child_run(
        [python, HERE / "legacy_executor.py", rows_file, url, sink, "--partitions", "2",
         "--concurrency", str(connections // 2)])
    result = json.loads(out.strip().splitlines()[-1])
    return result["rows"], wall, result["failed"]  # whole-process wall clock, as for sparkwasm


def compare(old, new, prefix=""):
    """What moved between two results, key by key (numbers only), as lines."""
    lines = []
    for key, value in new.items():
        before = old.get(key) if isinstance(old, dict) else None
        if isinstance(value, dict):
            lines += compare(before or {}, value, f"{prefix}{key}.")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                prior = before[i] if isinstance(before, list) and i < len(before) else {}
                lines += compare(prior, item, f"{prefix}{key}[{i}].")
        elif isinstance(value, (int, float)) and isinstance(before, (int, float)) and before:
            change = (value - before) / before * 100
            if abs(change) >= 1:
                lines.append(f"{prefix}{key}: {before} -> {value} ({change:+.0f}%)")
    return lines


def headline(f):
    """The README's one benchmark line, from the figures of a run."""
    legacy = next((r for r in f.get("in_flight", []) if r["partitions"] * r["consumers"] == 4000), None)
    line = (f"Benchmark ({f['date']}, 2 cores, loopback, `just bench`): {f['sparkwasm_rows_s']:,} rows/s = "
            f"{f['sparkwasm_rows_s'] / f['wrk_rps']:.2f}× wrk and "
            f"{f['sparkwasm_rows_s'] / f['python_rows_s']:.1f}× the Python reference; with the legacy "
            f"plugin chain {f['legacy_chain_rows_s'] / f['wrk_rps']:.2f}× wrk")
    if legacy:
        line += (f", and {legacy['rows_s'] / legacy['wrk_rps']:.2f}× wrk at the legacy default of 4,000 "
                 f"requests in flight ({legacy['peak_rss_mib']} MiB)")
    return line + ". Details: [docs/benchmark.md](docs/benchmark.md)."


def write_headline(figures):
    readme = HERE.parent / "README.md"
    begin, end = "<!-- bench:headline:begin -->", "<!-- bench:headline:end -->"
    doc = readme.read_text()
    if begin not in doc:
        return
    head, rest = doc.split(begin, 1)
    readme.write_text(head + begin + "\n" + headline(figures) + "\n" + end + rest.split(end, 1)[1])


def main():
    if sys.argv[1:] == ["--headline"]:
        # Rewrites the README's line from the committed results, without running anything.
        write_headline(json.loads((HERE / "results.json").read_text()))
        return
    p = argparse.ArgumentParser()
    p.add_argument("bin_dir", type=Path)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--memory-rows", type=int, default=2_000_000)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--wrk-seconds", type=int, default=10)
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--capacity", type=int, default=32,
                   help="requests at a time of the capacity-limited endpoint (0: skip those runs)")
    p.add_argument("--azurite", default=os.environ.get("SPARKWASM_AZURITE"),
                   help="Azurite's azurite-blob: also land in Delta on Azurite")
    p.add_argument("--in-flight", default="2x500,200x20,10x1000",
                   help="partitions x consumers for the 50 ms endpoint runs ('' for none)")
    args = p.parse_args()
    args.in_flight = [tuple(int(v) for v in c.split("x")) for c in args.in_flight.split(",") if c]
    # Thousands of connections at once: the soft limit of open files up to the hard one, for every
    # child (wrk, the server, sparkwasm, which also raises its own).
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    work = Path(tempfile.mkdtemp(prefix="sparkwasm-bench-"))
    server, url = serve(args.bin_dir)
    try:
        rows_file = work / "rows.parquet"
        subprocess.run([args.bin_dir / "testkit", "rows", str(args.rows), rows_file], check=True)
        print(f"endpoint {url}; {args.rows} rows; {args.connections} connections", flush=True)

        wrk_rate = wrk(url, args.connections, args.wrk_seconds)
        print(f"wrk:       {wrk_rate:,.0f} req/s", flush=True)

        rows, wall, cpu, rss = median_run(args.bin_dir, url, rows_file, work / "sw", args.connections)
        if rows != args.rows:
            sys.exit(f"sparkwasm landed {rows} rows, expected {args.rows}")
        sw_rate = rows / wall
        print(f"sparkwasm: {sw_rate:,.0f} rows/s ({wall:.1f} s, {cpu / rows * 1e6:.0f} µs CPU/row, "
              f"peak RSS {rss:.0f} MiB)", flush=True)

        # The same run landing in Azurite (Azure's storage emulator, on loopback, in memory) instead of
        # a local folder: what an object-store sink costs (its commits are HTTP round trips).
        az_rate = None
        if args.azurite:
            az_port = free_port()
            az = subprocess.Popen(
                [args.azurite, "--blobHost", "127.0.0.1", "--blobPort", str(az_port),
                 "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent",
                 "--disableTelemetry"],
                cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                az_url = f"http://127.0.0.1:{az_port}"
                for _ in range(300):
                    try:
                        import urllib.request
                        urllib.request.urlopen(f"{az_url}/devstoreaccount1?comp=list", timeout=1)
                    except urllib.error.HTTPError:
                        break  # it answers (403 to an unsigned request)
                    except OSError:
                        time.sleep(0.1)
                subprocess.run([sys.executable, HERE.parent / "tests" / "store_fixture.py",
                                "az-container", az_url, "bench"], check=True)
                a_rows, a_wall, _, _ = median_run(
                    args.bin_dir, url, rows_file, "az://bench/sw", args.connections,
                    extra_env={"AZURE_STORAGE_USE_EMULATOR": "true", "AZURITE_BLOB_STORAGE_URL": az_url})
                if a_rows != args.rows:
                    sys.exit(f"sparkwasm into Azurite landed {a_rows} rows, expected {args.rows}")
                az_rate = a_rows / a_wall
                print(f"sparkwasm into Azurite: {az_rate:,.0f} rows/s ({a_wall:.1f} s)", flush=True)
            finally:
                az.terminate()
                az.wait()

        py_rows, py_wall, py_failed = python_reference(args.python, url, rows_file, work / "py",
                                                       args.connections)
        if py_rows != args.rows or py_failed:
            sys.exit(f"python reference: {py_rows} rows, {py_failed} failed")
        py_rate = py_rows / py_wall
        print(f"python:    {py_rate:,.0f} rows/s ({py_wall:.1f} s)", flush=True)

        def chain_run(name, middleware):
            """sparkwasm with a 4-plugin `middleware` block (one warm-up run fills the compile cache):
            rows/s and µs of CPU per plugin hop over the run without plugins."""
            config = work / f"bench-{name}.yaml"
            config.write_text(CONFIG.read_text() + middleware)
            sparkwasm(args.bin_dir, url, rows_file, work / f"warm-{name}", args.connections, config)
            c_rows, c_wall, c_cpu, _ = median_run(args.bin_dir, url, rows_file, work / f"sw-{name}",
                                                  args.connections, config)
            if c_rows != args.rows:
                sys.exit(f"sparkwasm with {name} landed {c_rows} rows, expected {args.rows}")
            c_rate, hop = c_rows / c_wall, (c_cpu - cpu) / args.rows / 4 * 1e6
            print(f"sparkwasm + 4 {name}: {c_rate:,.0f} rows/s, {hop:.2f} µs CPU per hop", flush=True)
            return c_rate, c_cpu, hop, config

        p_rate, p_cpu, hop_us, p_config = chain_run("plugins", LEGACY_CHAIN)
        guest = args.bin_dir.parent / "plugins" / "wasm32-wasip2" / "release" / "passthrough.wasm"
        digest = hashlib.sha256(guest.read_bytes()).hexdigest()
        n_rate, n_cpu, bare_hop_us, n_config = chain_run("passthrough", "middleware:\n" + "".join(
            f'  - {{type: wasm, name: p{i}, path: "{guest}", sha256: "{digest}"}}\n' for i in range(4)))
        # The same chains in isolation (host/examples/hop.rs): no network, no sink, one thread.
        def hop_run(config):
            env = dict(os.environ, BENCH_API="http://127.0.0.1:9", BENCH_ROWS=str(rows_file),
                       BENCH_SINK=str(work / "unused"), BENCH_CONSUMERS="32")
            runs = []
            for _ in range(3):
                out = subprocess.run([args.bin_dir / "examples" / "hop", config], env=env,
                                     capture_output=True, text=True, check=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                if result["failed"]:
                    sys.exit(f"hop {config}: {result['failed']} requests failed; no figure from a failing chain")
                runs.append(result["cpu_us_per_request"])
            return sorted(runs)[1]

        bare_us = hop_run(CONFIG)
        iso_hop = (hop_run(p_config) - bare_us) / 4
        iso_bare_hop = (hop_run(n_config) - bare_us) / 4
        print(f"in isolation: {iso_hop:.2f} µs per legacy hop, {iso_bare_hop:.2f} µs per passthrough hop",
              flush=True)

        # Requests in flight: the legacy chain against an endpoint that answers after 50 ms, at the
        # concurrency of a big legacy job, beside wrk with as many connections.
        in_flight = []
        for partitions, per_partition in args.in_flight:
            n = partitions * per_partition
            rows_n = max(args.rows, n * 20)
            many = work / f"rows-{rows_n}.parquet"
            if not many.exists():
                subprocess.run([args.bin_dir / "testkit", "rows", str(rows_n), many], check=True)
            # One connection per request in flight (HTTP/1.1), as wrk opens: no per-host cap.
            base = (CONFIG.read_text()
                    .replace("url_path: /items/{id}", "url_path: /slow/50/{id}")
                    .replace("partitions: 2", f"partitions: {partitions}")
                    .replace("  base_timeout: 30\n", "  base_timeout: 30\n  tcp_connection: {limit: 0}\n"))
            w = wrk(url, n, args.wrk_seconds, path="/slow/50/1")
            rates = []
            # Without plugins first: what the rest of the pipeline reaches at this many in flight,
            # the most the chain could.
            for label, chain in [("bare", ""), ("chain", LEGACY_CHAIN)]:
                cfg = work / f"bench-inflight-{n}-{label}.yaml"
                cfg.write_text(base + chain)
                r_rows, r_wall, _, r_rss = median_run(args.bin_dir, url, many,
                                                       work / f"sw-inflight-{n}-{label}",
                                                       2 * per_partition, cfg)
                if r_rows != rows_n:
                    sys.exit(f"sparkwasm ({label}) at {n} in flight landed {r_rows} rows, expected {rows_n}")
                rates.append(r_rows / r_wall)
            bare, rate = rates
            in_flight.append((partitions, per_partition, w, rate, r_rss, bare))
            print(f"{n:,} in flight ({partitions} × {per_partition}), 50 ms API: no plugins "
                  f"{bare:,.0f} rows/s = {bare / w:.2f}× wrk; legacy chain {rate:,.0f} rows/s = "
                  f"{rate / w:.2f}× wrk ({w:,.0f}), peak RSS {r_rss:.0f} MiB", flush=True)

        # A capacity-limited endpoint (testkit's /capacity/C/ms: C requests at a time, each taking
        # ms, 429 at once beyond): fixed concurrency too low and too high against adaptive. Rows
        # answered 429 are sent again by later passes (max_attempts), so every row lands; the 429
        # share is read from the table (each attempt lands a row).
        capacity_runs = []
        if args.capacity:
            cap, cap_ms = args.capacity, 20
            cap_rows = max(20 * cap, args.rows // 10)
            cap_file = work / f"rows-{cap_rows}.parquet"
            if not cap_file.exists():
                subprocess.run([args.bin_dir / "testkit", "rows", str(cap_rows), cap_file], check=True)
            for label, execution in [
                ("fixed 2 × 4 (too low)", "concurrency_limit: 4"),
                ("fixed 2 × 64 (too high)", "concurrency_limit: 64"),
                ("adaptive, ceiling 2 × 64", "concurrency_limit: 64\n  concurrency: adaptive"),
            ]:
                cfg = work / f"bench-capacity-{len(capacity_runs)}.yaml"
                cfg.write_text(CONFIG.read_text()
                               .replace("url_path: /items/{id}", f"url_path: /capacity/{cap}/{cap_ms}/{{id}}")
                               .replace('  concurrency_limit: "{{env.BENCH_CONSUMERS}}"\n',
                                        f"  {execution}\n  max_attempts: 100\n"))
                sink = work / f"sw-capacity-{len(capacity_runs)}"
                c_rows, c_wall, _, _ = sparkwasm(args.bin_dir, url, cap_file, sink, args.connections, cfg)
                out = subprocess.run(
                    [args.python, "-c",
                     "import sys; from deltalake import DeltaTable; "
                     "t = DeltaTable(sys.argv[1]).to_pyarrow_table(); "
                     "s = t['status_code'].to_pylist(); ok = sum(1 for x in s if x == 200); "
                     "print(len(s), sum(1 for x in s if x == 429), ok, flush=True); "
                     # The deltalake wheel may abort in interpreter teardown (tests/read_delta.py).
                     "import os; os._exit(0)", str(sink)],
                    capture_output=True, text=True, check=True).stdout.split()
                attempts, refused, ok = (int(v) for v in out)
                if ok != cap_rows:
                    sys.exit(f"capacity run {label}: {ok} rows landed with success, expected {cap_rows}")
                rate = ok / c_wall
                capacity_runs.append((label, rate, refused / attempts))
                print(f"capacity {cap} × {cap_ms} ms ({cap * 1000 // cap_ms:,} rows/s): {label}: "
                      f"{rate:,.0f} rows/s = {rate / (cap * 1000 / cap_ms):.2f}× capacity, "
                      f"{refused / attempts:.1%} answered 429", flush=True)

        memory = []
        if args.memory_rows:
            big = work / "big.parquet"
            subprocess.run([args.bin_dir / "testkit", "rows", str(args.memory_rows), big], check=True)
            for i in range(3):
                shutil.rmtree(work / f"sw-{i}", ignore_errors=True)
            big_rows, big_wall, _, big_rss = sparkwasm(args.bin_dir, url, big, work / "sw-big",
                                                      args.connections)
            memory = [(args.rows, rss), (big_rows, big_rss)]
            print(f"sparkwasm on {big_rows} rows: {big_rows / big_wall:,.0f} rows/s, "
                  f"peak RSS {big_rss:.0f} MiB", flush=True)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)

    cpu_name = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                     if line.startswith("model name")), "unknown CPU")
    table = [
        f"{args.rows:,} rows, GET /items/{{id}} on a loopback testkit server, {args.connections} connections, "
        f"{os.cpu_count()} cores ({cpu_name}), release build:",
        "",
        "| contestant | rows/s | × wrk | × Python reference |",
        "| --- | ---: | ---: | ---: |",
        f"| wrk (raw load generator, no data) | {wrk_rate:,.0f} | 1.00 | {wrk_rate / py_rate:.2f} |",
        f"| **sparkwasm** (Parquet → HTTP → Delta, commit per 10k) | {sw_rate:,.0f} | "
        f"{sw_rate / wrk_rate:.2f} | {sw_rate / py_rate:.2f} |",
    ] + ([
        f"| sparkwasm into Delta on Azurite (Azure's emulator, loopback, in memory) | {az_rate:,.0f} | "
        f"{az_rate / wrk_rate:.2f} | {az_rate / py_rate:.2f} |",
    ] if az_rate else []) + [
        f"| Python asyncio + aiohttp reference (bench/legacy_executor.py) | {py_rate:,.0f} | "
        f"{py_rate / wrk_rate:.2f} | 1.00 |",
        f"| sparkwasm + retry, logging, timing, json_body (WASM) | {p_rate:,.0f} | "
        f"{p_rate / wrk_rate:.2f} | {p_rate / py_rate:.2f} |",
        f"| sparkwasm + 4 passthrough guests (host cost of a hop) | {n_rate:,.0f} | "
        f"{n_rate / wrk_rate:.2f} | {n_rate / py_rate:.2f} |",
        "",
        f"CPU per row: sparkwasm {cpu / args.rows * 1e6:.1f} µs without plugins, "
        f"{p_cpu / args.rows * 1e6:.1f} µs with the four legacy plugins: **{hop_us:.2f} µs per plugin "
        f"hop**; {n_cpu / args.rows * 1e6:.1f} µs with four passthrough guests (each called on the way "
        f"in and on the way out): **{bare_hop_us:.2f} µs per hop of host cost**. The same chains in "
        f"isolation (`host/examples/hop.rs`: 200k requests through the chain to a terminal that answers "
        f"at once, one thread, no network, no sink; median of three): **{iso_hop:.2f} µs per legacy "
        f"plugin hop, {iso_bare_hop:.2f} µs per passthrough hop**.",
    ]
    if in_flight:
        table += ["", "Requests in flight, an endpoint that answers after 50 ms, wrk with as many connections: "
                  "sparkwasm without plugins (the most a chain could reach) and with the legacy chain "
                  "(retry, logging, timing, json_body), its peak RSS:", "",
                  "| in flight (partitions × consumers) | wrk req/s | no plugins rows/s | × wrk "
                  "| legacy chain rows/s | × wrk | peak RSS |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        table += [f"| {p * c:,} ({p} × {c}) | {w:,.0f} | {b:,.0f} | {b / w:.2f} | {r:,.0f} | {r / w:.2f} "
                  f"| {m:.0f} MiB |"
                  for p, c, w, r, m, b in in_flight]
    if capacity_runs:
        cap_rate = args.capacity * 1000 / 20
        table += ["", f"A capacity-limited endpoint ({args.capacity} requests at a time, 20 ms each: "
                  f"{cap_rate:,.0f} rows/s; 429 at once beyond), every row landed (429s sent again by "
                  "later passes):", "",
                  "| concurrency | rows/s | × capacity | answered 429 |", "| --- | ---: | ---: | ---: |"]
        table += [f"| {label} | {rate:,.0f} | {rate / cap_rate:.2f} | {share:.1%} |"
                  for label, rate, share in capacity_runs]
    if memory:
        table += ["", "| input rows | sparkwasm peak RSS |", "| ---: | ---: |"]
        table += [f"| {n:,} | {m:.0f} MiB |" for n, m in memory]
    day = time.strftime("%Y-%m-%d")
    table.insert(0, f"Run of {day}.\n")
    text = "\n".join(table) + "\n"
    print("\n" + text)
    figures = {
        "date": day,
        "rows": args.rows,
        "connections": args.connections,
        "wrk_rps": round(wrk_rate),
        "sparkwasm_rows_s": round(sw_rate),
        "python_rows_s": round(py_rate),
        "azurite_rows_s": round(az_rate) if az_rate else None,
        "legacy_chain_rows_s": round(p_rate),
        "passthrough_rows_s": round(n_rate),
        "cpu_us_per_row": round(cpu / args.rows * 1e6, 2),
        "legacy_hop_us": round(hop_us, 2),
        "passthrough_hop_us": round(bare_hop_us, 2),
        "isolated_legacy_hop_us": round(iso_hop, 2),
        "isolated_passthrough_hop_us": round(iso_bare_hop, 2),
        "in_flight": [
            {"partitions": p, "consumers": c, "wrk_rps": round(w), "rows_s": round(r),
             "peak_rss_mib": round(m), "no_plugins_rows_s": round(b)}
            for p, c, w, r, m, b in in_flight
        ],
        "peak_rss_mib": {str(n): round(m) for n, m in memory},
        "capacity": [
            {"concurrency": label, "rows_s": round(rate), "share_429": round(share, 4)}
            for label, rate, share in capacity_runs
        ],
    }
    results = HERE / "results.json"
    if results.exists():
        print("Against the committed results (" + json.loads(results.read_text()).get("date", "?") + "):")
        for line in compare(json.loads(results.read_text()), figures):
            print("  " + line)
    results.write_text(json.dumps(figures, indent=2) + "\n")
    write_svg(figures, str(HERE / "throughput.svg"))
    page = HERE.parent / "docs" / "benchmark.md"
    begin, end = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
    doc = page.read_text()
    head, rest = doc.split(begin, 1)
    chart = ("\n![rows/s against requests in flight](../bench/throughput.svg)\n\n"
             "*Rows/s against requests in flight (log scale), drawn by `bench/chart.py` from "
             f"`bench/results.json`: filled markers are the runs with {args.connections} in flight against the "
             "instant endpoint, hollow joined ones the legacy chain and wrk against the endpoint that answers "
             "after 50 ms.*\n")
    page.write_text(head + begin + "\n" + text + chart + end + rest.split(end, 1)[1])
    write_headline(figures)


if __name__ == "__main__":
    main()
