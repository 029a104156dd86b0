#!/usr/bin/env python3
"""Our own code's profile per request, function by function, from the test harness.

Runs the ignored test `profile_loop_d1` (xtask/src/bench/probes.rs: D1's requests with the
benchmark's configuration and token, through chain.wasm in the wasmtime harness) under
valgrind's callgrind twice, with two numbers of requests, and reports what the extra requests
cost in the module's compiled code: instructions per request by wasm function, and the distinct
64-byte lines of compiled code a request runs through (about one first-level instruction-cache
miss each when the code is cold). Differencing two runs cancels start-up, compilation and the
warm-up requests. wasmtime's code is Cranelift's, not V8's: the figures compare builds and
functions, not times in Envoy (BENCHMARKS.md, "Our own code, function by function").

Usage: python3 bench/harness-profile.py [--out DIR] [--low 2000] [--high 6000] [--reuse]
(`--reuse`: report again from the callgrind files and perf maps already in DIR). It builds chain.wasm with its name section into target/profile-wasm (the `wasm-chain` profile
strips names) and xtask's test binary, and needs valgrind (Debian's package).
"""

import argparse
import bisect
import collections
import json
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINE = 64
TEST = "bench::probes::tests::profile_loop_d1"


def run(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, cwd=ROOT, **kw)


def build_named_chain():
    """chain.wasm with its name section, so that wasmtime's perf map names its functions."""
    target = ROOT / "target" / "profile-wasm"
    env = dict(os.environ, CARGO_PROFILE_WASM_CHAIN_STRIP="none")
    run(["cargo", "build", "-q", "-p", "chain", "--target", "wasm32-wasip1",
         "--profile", "wasm-chain", "--target-dir", str(target)], env=env)
    built = target / "wasm32-wasip1" / "wasm-chain" / "chain.wasm"
    wasm_dir = target / "named"
    wasm_dir.mkdir(parents=True, exist_ok=True)
    (wasm_dir / "chain.wasm").write_bytes(built.read_bytes())
    return wasm_dir


def xtask_test_binary():
    """The test binary of xtask's that holds the loop (xtask has a library and a binary)."""
    out = run(["cargo", "test", "-q", "-p", "xtask", "--no-run", "--message-format=json"],
              stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if (msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "xtask"
                and msg["profile"]["test"] and msg.get("executable")):
            listed = subprocess.run([msg["executable"], "--list", "--ignored"], cwd=ROOT,
                                    stdout=subprocess.PIPE, text=True, check=True).stdout
            if f"{TEST}: test" in listed.splitlines():
                return msg["executable"]
    sys.exit(f"no test binary of xtask's holds {TEST}")


def profile(binary, wasm_dir, requests, out_dir):
    """Runs the loop under callgrind: the callgrind file and wasmtime's perf map of the run."""
    out = out_dir / f"callgrind.{requests}"
    env = dict(os.environ, PROFILE_REQUESTS=str(requests), WASMGATE_HARNESS_NO_FUEL="1",
               WASMGATE_HARNESS_PERFMAP="1", WASMGATE_HARNESS_NO_CACHE="1",
               WASMGATE_WASM_DIR=str(wasm_dir))
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--dump-instr=yes", f"--callgrind-out-file={out}",
         binary, TEST, "--exact", "--ignored"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"the profile loop failed:\n{err[-2000:]}")
    # Valgrind runs the program in its own process, so the map carries valgrind's pid.
    perf_map = pathlib.Path(f"/tmp/perf-{proc.pid}.map")
    kept = out_dir / f"perf.{requests}.map"
    kept.write_bytes(perf_map.read_bytes())
    perf_map.unlink()
    return out, kept


def read_perf_map(path):
    """(starts, ends, names) of the compiled wasm functions, sorted by start."""
    spans = []
    for line in path.read_text().splitlines():
        start, size, name = line.split(" ", 2)
        spans.append((int(start, 16), int(size, 16), name))
    spans.sort()
    return ([s for s, _, _ in spans], [s + n for s, n, _ in spans], [f for _, _, f in spans])


def instruction_costs(path):
    """Instructions executed at each code address (self cost, calls excluded).

    A cost line of a `--dump-instr=yes` file gives the positions named by its `positions:`
    header (here `instr line`), each absolute, relative to the previous (`+n`, `-n`) or the
    same (`*`), then the cost."""
    costs = collections.Counter()
    address = 0
    fields = 1
    skip_next = False
    with open(path) as f:
        for line in f:
            if line.startswith("positions:"):
                fields = len(line.split()) - 1
                continue
            if line.startswith("calls="):
                # The next line is the call's inclusive cost, at the call's position.
                skip_next = True
                continue
            if line[:1] not in "0123456789+-*":
                continue
            parts = line.split()
            if len(parts) <= fields:
                continue
            pos = parts[0]
            if pos.startswith("0x"):
                address = int(pos, 16)
            elif pos[0] in "+-":
                address += int(pos)
            elif pos != "*":
                address = int(pos)
            if skip_next:
                skip_next = False
                continue
            costs[address] += int(parts[fields])
    return costs


def by_function(costs, perf_map):
    """Costs keyed by (function, offset in it), for the addresses inside compiled wasm."""
    starts, ends, names = perf_map
    keyed = {}
    for address, cost in costs.items():
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < ends[i]:
            keyed[(names[i], address - starts[i], address)] = cost
    return keyed


def clean(name):
    """A readable function name: wasmtime's prefix and Rust's hash suffix dropped."""
    name = re.sub(r"^wasm\[\d+\]::function\[\d+\]::", "", name)
    return re.sub(r"::h[0-9a-f]{16}$", "", name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "target" / "harness-profile"))
    parser.add_argument("--low", type=int, default=2000)
    parser.add_argument("--high", type=int, default=6000)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--reuse", action="store_true")
    args = parser.parse_args()
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    if args.reuse:
        files = {n: (out_dir / f"callgrind.{n}", out_dir / f"perf.{n}.map")
                 for n in (args.low, args.high)}
    else:
        wasm_dir = build_named_chain()
        binary = xtask_test_binary()
        files = {n: profile(binary, wasm_dir, n, out_dir) for n in (args.low, args.high)}
    runs = {n: by_function(instruction_costs(cg), read_perf_map(pm))
            for n, (cg, pm) in files.items()}

    # Compiled code may sit at other addresses in the two runs: match by function and offset.
    low = {(f, off): c for (f, off, _), c in runs[args.low].items()}
    requests = args.high - args.low
    per_function = collections.Counter()
    per_line = collections.Counter()
    for (function, offset, address), cost in runs[args.high].items():
        extra = cost - low.get((function, offset), 0)
        if extra > 0:
            per_function[clean(function)] += extra
            per_line[address // LINE] += extra
    total = sum(per_function.values())
    # A line a request runs through runs at least one instruction per request; lines below that
    # ran in a few of the requests only (a hash table's rare path, periodic work) and differ from
    # one pair of runs to the next.
    lines = [line for line, cost in per_line.items() if cost >= requests]

    report = [
        "# Our own code per request in the harness (profile_loop_d1)",
        "",
        f"- requests: {args.high} against {args.low}, the difference divided by {requests}",
        "- module: chain.wasm (profile wasm-chain, name section kept), wasmtime, fuel off",
        f"- compiled code: **{total / requests:,.0f} instructions per request**, over "
        f"**{len(lines):,} distinct {LINE}-byte lines** that run at least one instruction per "
        f"request ({len(per_line):,} run at all)",
        "",
        "| function | instructions per request |",
        "|---|---:|",
    ]
    for function, cost in per_function.most_common(args.top):
        report.append(f"| `{function}` | {cost / requests:,.0f} |")
    rest = total - sum(c for _, c in per_function.most_common(args.top))
    report.append(f"| the other {max(len(per_function) - args.top, 0)} functions | "
                  f"{rest / requests:,.0f} |")
    text = "\n".join(report) + "\n"
    (out_dir / "profile.md").write_text(text)
    (out_dir / "profile.json").write_text(json.dumps({
        "requests": [args.low, args.high],
        "instructions_per_request": total / requests,
        "distinct_lines": len(lines),
        "lines_run_at_all": len(per_line),
        "functions": {f: c / requests for f, c in per_function.most_common()},
    }, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
