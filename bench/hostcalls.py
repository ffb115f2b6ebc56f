#!/usr/bin/env python3
"""What one proxy-wasm hostcall costs inside Envoy.

The empty filter (`bench/empty-filter`) with configuration `hostcall <kind>` makes four hostcalls
of one kind per request and nothing else. Each kind runs beside the empty filter and no filter at
all, in interleaved rounds (same Envoy, same wrk, as bench/run), and the cost of one hostcall is
(CPU µs per request of the kind - that of the empty filter) / 4, from the medians of the rounds.

    python3 bench/hostcalls.py [--rounds 5] [--no-build] [--out bench/results]

Writes hostcalls.md and hostcalls.json to the results directory.
"""

import argparse
import datetime
import json
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402

KINDS = {
    "headers": "all request headers (`get_header_map_pairs`)",
    "value": "one request header (`get_header_map_value`, `:path`)",
    "remove": "remove a request header (`remove_header_map_value`, absent)",
    "time": "the clock (`get_current_time_nanoseconds`)",
    "metric": "increment a counter (`increment_metric`)",
    "property": "one property (`get_property`, `source.address`: what a gRPC check reads five of)",
}
REPEAT = 4


def main():
    parser = argparse.ArgumentParser(description="the cost of one proxy-wasm hostcall in Envoy")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--no-build", action="store_true")
    parser.add_argument("--no-pin", dest="pin", action="store_false")
    parser.add_argument("--out", default=bench.RESULTS)
    args = parser.parse_args()
    if (os.cpu_count() or 1) < 2:
        args.pin = False
    if not args.no_build:
        bench.run_build(["cargo", "build", "--release", "--target", "wasm32-wasip1",
                         "--manifest-path", bench.EMPTY_MANIFEST], "empty wasm filter")  # fmt: skip
    listeners = [
        bench.listener("no-filter", []),
        bench.listener("wasm-empty", [bench.wasm_filter("empty", bench.EMPTY_WASM, "empty", "", "")]),
    ]
    for kind in KINDS:
        name = f"hostcall-{kind}"
        filters = [bench.wasm_filter(name, bench.EMPTY_WASM, "empty", "", f"hostcall {kind}")]
        listeners.append(bench.listener(name, filters))
    config = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {"listeners": listeners},
    }
    binary = bench.envoy_binary()
    info = bench.machine(binary)
    started = datetime.datetime.now(datetime.timezone.utc)
    names = [listener["name"] for listener in listeners]
    runs = {name: [] for name in names}
    try:
        envoy = bench.Envoy(binary, config, os.path.join(bench.WORK, "envoy-hostcalls"), args.pin)
        for name in names:
            status = bench.http_status(envoy.ports[name], {})
            if status != 200:
                sys.exit(f"{name}: the request got {status}, not 200\n{envoy.log_tail()}")
        for n in range(args.rounds):
            bench.log(f"round {n + 1}/{args.rounds}")
            for name in names:
                scenario = dict(name=name, listener=name, tokens=None)
                runs[name].append(bench.measure(envoy, os.getpid(), scenario, args))
    finally:
        bench.stop_all()

    cpu = {name: statistics.median(r["cpu_us_per_request"] for r in runs[name]) for name in names}
    rps = {name: statistics.median(r["rps"] for r in runs[name]) for name in names}
    rows = [
        "| listener | what it does per request | RPS | CPU µs/req | µs per hostcall |",
        "|---|---|---:|---:|---:|",
        f"| no-filter | nothing | {rps['no-filter']:,.0f} | {cpu['no-filter']:.1f} | |",
        f"| wasm-empty | the empty filter | {rps['wasm-empty']:,.0f} | {cpu['wasm-empty']:.1f} | |",
    ]
    per_call = {}
    for kind, what in KINDS.items():
        name = f"hostcall-{kind}"
        per_call[kind] = (cpu[name] - cpu["wasm-empty"]) / REPEAT
        rows.append(f"| {name} | the empty filter + {REPEAT} × {what} | {rps[name]:,.0f} | "
                    f"{cpu[name]:.1f} | {per_call[kind]:.2f} |")  # fmt: skip
    spread = {
        name: [round(r["cpu_us_per_request"], 1) for r in runs[name]] for name in names
    }
    text = "\n".join(
        [
            f"# The cost of one hostcall in Envoy, {started:%Y-%m-%d %H:%M} UTC",
            "",
            f"- machine: {info['cpu_model']}, {info['cores']} cores; Envoy {info['envoy']}; "
            f"wrk -t1 -c{args.connections}",
            f"- {args.rounds} interleaved rounds, {args.warmup} s warm-up + {args.duration} s "
            "measured each; medians of the rounds",
            "",
            *rows,
            "",
            "µs per hostcall = (CPU µs/req − wasm-empty's) / "
            f"{REPEAT}. CPU µs/req per round: "
            + "; ".join(f"{name} {values}" for name, values in spread.items()),
            "",
        ]
    )
    os.makedirs(args.out, exist_ok=True)
    bench.write_atomic(os.path.join(args.out, "hostcalls.md"), text)
    bench.write_atomic(
        os.path.join(args.out, "hostcalls.json"),
        json.dumps({"started": started.isoformat(), "machine": info, "rounds": runs,
                    "us_per_hostcall": per_call}, indent=1) + "\n",  # fmt: skip
    )
    print(text)


if __name__ == "__main__":
    main()
