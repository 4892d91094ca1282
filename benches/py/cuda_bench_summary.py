#!/usr/bin/env python3
"""Summarise one or more runs of the `cuda_bench` binary.

Usage: python3 benches/py/cuda_bench_summary.py CUDA_BENCH_LOG [--check]

The log holds the output of one or more `cuda_bench` processes (the device script runs it five
times into one file). Each process prints one `RESULT {json}` line per measurement; this script
groups the lines by benchmark name and prints the median, minimum and maximum over the
processes, then the launch ratios pooled over the three buffer sizes (the launch cost does not
depend on the size: a one-rank in-place all-reduce launches no kernel).

With --check it exits 1 when a target is missed: window enter + exit <= 10 ns, window + 8 KiB
allocation + free <= 50 ns (medians over the processes), and the pooled median of the
all-reduce launch ratio symmem / raw `ncclAllReduce` <= 1.05.
"""
import collections
import json
import statistics
import sys


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if len(args) != 1:
        print(__doc__)
        return 2
    values = collections.defaultdict(list)
    with open(args[0]) as f:
        for line in f:
            if line.startswith("RESULT "):
                j = json.loads(line[len("RESULT "):])
                values[j["bench"]].append(j["value"])
    if not values:
        print("no RESULT lines: did cuda_bench run?")
        return 1
    for name, v in values.items():
        print(f"{name:<48} median {statistics.median(v):9.3f}  min {min(v):9.3f}  "
              f"max {max(v):9.3f}  n {len(v)}")
    pooled = {}
    for suffix in ("symmem_over_raw", "symmem_over_raw_cudarc", "comm_layer_over_raw",
                   "symmem_minus_raw"):
        xs = [x for k, v in values.items() if k.endswith("KiB_" + suffix) for x in v]
        if xs:
            pooled[suffix] = statistics.median(xs)
            print(f"all sizes {suffix:<24} median {statistics.median(xs):.3f}  "
                  f"min {min(xs):.3f}  max {max(xs):.3f}  n {len(xs)}")
    if "--check" not in sys.argv:
        return 0
    checks = [
        ("window enter + exit <= 10 ns",
         statistics.median(values.get("window_enter_exit", [float("inf")])) <= 10.0),
        ("window + 8 KiB alloc + free <= 50 ns",
         statistics.median(values.get("window_alloc_free_8KiB_symmetric", [float("inf")]))
         <= 50.0),
        ("all-reduce launch <= 1.05x raw", pooled.get("symmem_over_raw", float("inf")) <= 1.05),
    ]
    for what, ok in checks:
        print(f"{what}: {'met' if ok else 'MISSED'}")
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
