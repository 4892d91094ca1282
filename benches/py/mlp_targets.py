#!/usr/bin/env python3
"""Compare the tp_mlp example with its PyTorch twin, measured in the same run, against the
example issue's performance targets.

Usage: python3 benches/py/mlp_targets.py RUST_LOG TORCH_LOG

RUST_LOG is the output of `tp_mlp --backend cuda --preset llama3-8b --dtype bf16 --graph
--tokens 1,8,32,64,4096`; TORCH_LOG the output of `benches/py/tp_mlp_torch.py` with the same
sizes. Both print one `RESULT {json}` line per measurement; this script reads those lines only.

Targets (tp 1, one GPU, bf16):
  decode (tokens <= 64): graph replay per step <= 1.15 x the memory floor (weight bytes over the
      device copy rate measured in the same run, by the Rust binary); graph no slower than
      PyTorch's graph; eager no slower than PyTorch eager.
  prefill (tokens >= 1024): the step runs at >= 80 % of the cuBLAS GEMM rate measured in the
      same run (time the step's GEMMs take alone, at their measured rates, over the step time).

Prints a table with one verdict per target (`met` / `MISSED`) and exits 0; it is a report.
Exit 2 when a log lacks the records it needs.
"""

import json
import sys

DECODE_MAX = 64
PREFILL_MIN = 1024
FLOOR_RATIO = 1.15
PREFILL_SHARE = 0.80


def records(path):
    out = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            i = line.find("RESULT {")
            if i < 0:
                continue
            try:
                out.append(json.loads(line[i + len("RESULT "):]))
            except json.JSONDecodeError:
                pass
    return out


def steps(recs):
    """{(tokens, mode): ms_per_step}"""
    return {(r["tokens"], r["mode"]): r["ms_per_step"] for r in recs if r.get("kind") == "step"}


def verdict(ok):
    return "met" if ok else "MISSED"


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    rust, torch = records(argv[1]), records(argv[2])
    floor = [r for r in rust if r.get("kind") == "memory_floor"]
    if not floor or not steps(rust):
        print(f"mlp_targets: {argv[1]} has no memory_floor / step records", file=sys.stderr)
        return 2
    floor_ms = floor[-1]["floor_ms"]
    rs, ts = steps(rust), steps(torch)
    dtype = floor[-1].get("dtype", "?")
    sizes = f"hidden {floor[-1].get('hidden')}, ffn {floor[-1].get('ffn')}, tp {floor[-1].get('tp')}"
    print(f"tp_mlp targets ({sizes}, {dtype}); memory floor {floor_ms:.4f} ms/step "
          f"at {floor[-1].get('copy_gbps', 0):.0f} GB/s (Rust binary, same run)")
    gemms = {}
    for r in rust:
        if r.get("kind") == "gemm":
            m, k, n = r["mkn"]
            gemms.setdefault(r["tokens"], []).append((2.0 * m * k * n, r["tflops"]))
    tokens = sorted({t for t, _ in rs})
    head = (f"  {'tokens':>6} | {'eager ms':>9} | {'torch eager':>11} | {'graph ms':>9} | "
            f"{'torch graph':>11} | {'graph/floor':>11} | {'GEMM share':>10} | verdicts")
    print(head)
    print("  " + "-" * (len(head) - 2))
    missed = []
    for t in tokens:
        e, g = rs.get((t, "eager")), rs.get((t, "graph"))
        te, tg = ts.get((t, "eager")), ts.get((t, "graph"))
        notes = []
        share = None
        if t <= DECODE_MAX:
            if g is not None:
                ok = g <= FLOOR_RATIO * floor_ms
                notes.append(f"graph<=1.15xfloor {verdict(ok)}")
                ok or missed.append(f"tokens {t}: graph {g:.4f} ms = {g / floor_ms:.3f} x floor")
            if g is not None and tg is not None:
                ok = g <= tg
                notes.append(f"graph<=torch {verdict(ok)}")
                ok or missed.append(f"tokens {t}: graph {g:.4f} ms vs PyTorch graph {tg:.4f} ms")
            if e is not None and te is not None:
                ok = e <= te
                notes.append(f"eager<=torch {verdict(ok)}")
                ok or missed.append(f"tokens {t}: eager {e:.4f} ms vs PyTorch eager {te:.4f} ms")
        if t >= PREFILL_MIN and t in gemms:
            gemm_ms = sum(flops / (tf * 1e12) for flops, tf in gemms[t]) * 1e3
            best = min(x for x in (e, g) if x is not None)
            share = gemm_ms / best
            ok = share >= PREFILL_SHARE
            notes.append(f"prefill>=80% GEMM rate {verdict(ok)}")
            ok or missed.append(f"tokens {t}: step at {share:.1%} of the GEMM rate")

        def f(x, w, p=4):
            return f"{x:>{w}.{p}f}" if x is not None else f"{'-':>{w}}"

        ratio = g / floor_ms if g is not None else None
        print(f"  {t:>6} | {f(e, 9)} | {f(te, 11)} | {f(g, 9)} | {f(tg, 11)} | {f(ratio, 11, 3)} | "
              f"{(f'{share:.1%}' if share is not None else '-'):>10} | {', '.join(notes)}")
    print("  all targets met" if not missed else "  MISSED:\n    " + "\n    ".join(missed))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
