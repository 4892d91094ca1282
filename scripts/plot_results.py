#!/usr/bin/env python3
"""Plot symmem's measured results from the RESULT lines of the raw logs in docs/results/.

Install:  python3 -m pip install matplotlib        (Python 3.8+; nothing else is needed)

Usage (from the repository root):
  python3 scripts/plot_results.py                 # both plots from the newest runs that have them
  python3 scripts/plot_results.py --run 2026-12-04-h200-final
  python3 scripts/plot_results.py --check         # parse every log, print record counts, no plots
  python3 scripts/plot_results.py --list          # the runs in time order and what each holds

Writes (SVG, reproducible: fixed hash salt, no date):
  docs/img/mlp-step.svg    tp_mlp step time (eager and graph replay) by token count, next to the
                           PyTorch twin (benches/py/tp_mlp_torch.py) and the memory floor, one
                           panel per tensor-parallel size (`tp`) found in the run
  docs/img/allreduce.svg   all-reduce time per operation by size: symmem symmetric, symmem plain,
                           raw ncclAllReduce on a registered window (benches/cuda_allreduce.rs) and
                           PyTorch (benches/py/allreduce_bench.py, only run with several GPUs), one
                           panel per rank count (`ranks` / `world_size`)

Inputs. A *run* is one folder under --results (default docs/results), e.g. the logs of one
`bash .device-bin/run-on-device.sh` (staged by scripts/gpu-run.sh). Every line of a *.log or *.txt
file that starts with `RESULT ` is a record: a JSON object (what tp_mlp, the CUDA benches and the
Python twins print) or, failing that, `key=value` words. A log is cut into invocations at its
`## <command> (limit Ns)` lines (written by the device script), so two runs of one program in one
file stay apart.

Which run: --run NAME (a folder name under --results) for both plots; by default, for each plot
separately, the newest run holding its records. Runs are ordered by the `date:` line at the top of
their gpu-tests.log (the device script writes it), else by the date their name starts with
(YYYY-MM-DD, as midnight UTC), ties by name. Inside the run, for the MLP plot: the model size of the
PyTorch twin's records if there are any, else the largest with step records; per `tp`, the
invocation with the most step records of that size (ties: the first file by name, then the first
invocation in it). For the all-reduce plot: per rank count, the invocation with the most records.

Nothing is invented: a series with no records is left out and named as missing on the panel. With
no records at all for a plot the script stops with a message naming the runs that have them
(exit 2). Exit codes: 0 ok, 1 a RESULT line could not be parsed (--check), 2 missing records or
bad arguments, 3 matplotlib is not installed.
"""

import argparse
import datetime as dt
import json
import os
import re
import sys

PROG = "plot_results.py"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_RESULTS = os.path.join(ROOT, "docs", "results")
DEFAULT_OUT = os.path.join(ROOT, "docs", "img")
HEADER = re.compile(r"^## (?!exit )(.*?)(?: \(limit \d+s\))?\s*$")
DATE_LINE = re.compile(r"^date:\s*(.+?)\s*$")


def fail(msg, code=2):
    print(f"{PROG}: {msg}", file=sys.stderr)
    sys.exit(code)


# ----------------------------------------------------------------------------------------------
# Reading the logs


def parse_value(v):
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(v, v)


def parse_record(text):
    """A RESULT payload: JSON object, else key=value words. None if neither."""
    text = text.strip()
    if text.startswith("{"):
        try:
            rec = json.loads(text)
            return rec if isinstance(rec, dict) else None
        except json.JSONDecodeError:
            return None
    words = text.split()
    if words and all("=" in w for w in words):
        return {k: parse_value(v) for k, v in (w.split("=", 1) for w in words)}
    return None


def read_run(path):
    """Records of one run folder: list of dicts with '_file', '_seg', '_cmd' added; bad lines."""
    records, bad = [], []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for name in sorted(filenames):
            if not name.endswith((".log", ".txt")):
                continue
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, path)
            seg, cmd = 0, ""
            with open(full, encoding="utf-8", errors="replace") as f:
                for lineno, line in enumerate(f, 1):
                    m = HEADER.match(line)
                    if m:
                        seg, cmd = seg + 1, m.group(1)
                        continue
                    if not line.startswith("RESULT "):
                        continue
                    rec = parse_record(line[len("RESULT "):])
                    if rec is None:
                        bad.append(f"{rel}:{lineno}")
                        continue
                    rec.update(_file=rel, _seg=seg, _cmd=cmd)
                    records.append(rec)
    return records, bad


def run_time(path, name):
    """Sort key of a run: the `date:` of gpu-tests.log, else the date of the name, then the name."""
    when = None
    log = os.path.join(path, "gpu-tests.log")
    if os.path.exists(log):
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f.readlines()[:5]:
                m = DATE_LINE.match(line)
                if m:
                    for fmt in ("%a %b %d %I:%M:%S %p %Z %Y", "%a %b %d %H:%M:%S %Z %Y"):
                        try:
                            when = dt.datetime.strptime(" ".join(m.group(1).split()), fmt)
                            break
                        except ValueError:
                            pass
    if when is None:
        m = re.match(r"(\d{4})-(\d{2})-(\d{2})", name)
        when = dt.datetime(*map(int, m.groups())) if m else dt.datetime.min
    return (when, name)


def load_runs(results):
    if not os.path.isdir(results):
        fail(f"no results folder {results}")
    runs = []
    for name in sorted(os.listdir(results)):
        path = os.path.join(results, name)
        if os.path.isdir(path):
            recs, bad = read_run(path)
            runs.append({"name": name, "path": path, "key": run_time(path, name), "records": recs, "bad": bad})
    runs.sort(key=lambda r: r["key"])
    return runs


# ----------------------------------------------------------------------------------------------
# Record kinds


def is_mlp(r):  # the tp_mlp example (Rust): no "bench" key
    return "bench" not in r and r.get("kind") in ("step", "memory_floor", "all_reduce", "gemm", "check")


def is_torch_mlp(r):
    return r.get("bench") == "tp_mlp_torch"


def is_sweep(r):
    return r.get("bench") == "cuda_allreduce"


def is_torch_ar(r):
    return r.get("bench") == "allreduce_bench" and r.get("kind") == "latency"


def size_key(r):
    return (r.get("hidden"), r.get("ffn"), r.get("layers"), r.get("dtype"))


def ranks_of(r):
    return int(r.get("ranks", r.get("world_size", r.get("tp", 1))))


def device_of(records):
    for r in records:
        d = r.get("device")
        if isinstance(d, str) and d:
            return re.sub(r"\s*\(cuda:\d+\)$", "", d)
    return "device not recorded"


def classify(r):
    if is_mlp(r):
        return f"tp_mlp {r['kind']}"
    if is_torch_mlp(r):
        return f"tp_mlp_torch {r.get('kind')}"
    if is_sweep(r):
        return "cuda_allreduce"
    if is_torch_ar(r):
        return "allreduce_bench latency"
    if "bench" in r:
        b = str(r["bench"])
        return "cuda_bench" if b.startswith(("window", "all_reduce", "alloc", "cpu_")) else b
    return f"other {r.get('kind', '?')}"


def best_segment(recs):
    """The (file, seg) with the most records; ties: first file by name, then first segment."""
    count = {}
    for r in recs:
        count[(r["_file"], r["_seg"])] = count.get((r["_file"], r["_seg"]), 0) + 1
    seg = min(count, key=lambda k: (-count[k], k))
    return [r for r in recs if (r["_file"], r["_seg"]) == seg]


def pick_run(runs, name, has, what):
    if name:
        for run in runs:
            if run["name"] == name:
                if not any(has(r) for r in run["records"]):
                    fail(f"run {name} has no {what}; runs that have them: {holders(runs, has)}")
                return run
        fail(f"no run named {name!r} under the results folder; runs: {', '.join(r['name'] for r in runs)}")
    for run in reversed(runs):
        if any(has(r) for r in run["records"]):
            return run
    fail(f"no run has {what}: nothing to plot")


def holders(runs, has):
    names = [r["name"] for r in runs if any(has(x) for x in r["records"])]
    return ", ".join(names) if names else "none"


# ----------------------------------------------------------------------------------------------
# Plots


def mlp_data(run):
    recs = run["records"]
    torch = [r for r in recs if is_torch_mlp(r)]
    steps = [r for r in recs if is_mlp(r) and r["kind"] == "step"]
    sizes = {size_key(r) for r in steps}
    twin_sizes = {size_key(r) for r in torch if r.get("kind") == "step"} & sizes
    if twin_sizes:
        size = sorted(twin_sizes, key=str)[0]
    else:
        size = max(sizes, key=lambda s: ((s[0] or 0) * (s[1] or 0) * (s[2] or 1), str(s)))
    panels = []
    for tp in sorted({int(r.get("tp", 1)) for r in steps if size_key(r) == size}):
        mine = [r for r in recs if is_mlp(r) and size_key(r) == size and int(r.get("tp", 1)) == tp]
        seg = best_segment([r for r in mine if r["kind"] == "step"])
        f, s = seg[0]["_file"], seg[0]["_seg"]
        seg_all = [r for r in mine if (r["_file"], r["_seg"]) == (f, s)]
        floor = next((r["floor_ms"] for r in seg_all if r["kind"] == "memory_floor"), None)
        twin = [r for r in torch if size_key(r) == size and int(r.get("tp", r.get("world_size", 1))) == tp
                and r.get("kind") == "step"]
        twin = best_segment(twin) if twin else []
        panels.append({"tp": tp, "steps": seg, "floor": floor, "twin": twin, "src": f"{f}: {seg[0]['_cmd']}"})
    others = sorted({(int(r.get("tp", 1)), size_key(r)) for r in steps if size_key(r) != size}, key=str)
    return size, panels, others


def series(recs, mode, tkey="tokens", vkey="ms_per_step"):
    pts = sorted((r[tkey], r[vkey]) for r in recs if r.get("kind") == "step" and r.get("mode") == mode)
    return [p[0] for p in pts], [p[1] for p in pts]


DECODE_MAX_TOKENS = 128  # left panel: decode sizes (step near the memory floor); right: larger


def human_bytes(b):
    for unit, div in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= div and b % div == 0:
            return f"{b // div} {unit}"
    return f"{b} B"


def plot_mlp(plt, run, out):
    size, panels, others = mlp_data(run)
    hidden, ffn, layers, dtype = size
    big = any(t > DECODE_MAX_TOKENS for p in panels for t in series(p["steps"], "graph")[0] + series(p["steps"], "eager")[0])
    ncol = 2 if big else 1
    fig, axes = plt.subplots(len(panels), ncol, figsize=(6.0 * ncol, 4.2 * len(panels)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 2]} if big else None)
    lines = {"symmem graph": ("o-", "tab:blue"), "symmem eager": ("o--", "tab:cyan"),
             "PyTorch graph": ("s-", "tab:red"), "PyTorch eager": ("s--", "salmon")}
    for row, p in zip(axes, panels):
        data = {}
        for mode in ("graph", "eager"):
            data[f"symmem {mode}"] = dict(zip(*series(p["steps"], mode)))
            data[f"PyTorch {mode}"] = dict(zip(*series(p["twin"], mode)))
        gpus = f"{p['tp']} GPU{'s' if p['tp'] > 1 else ''}"
        ax = row[0]
        for name, (style, color) in lines.items():
            pts = sorted((t, v) for t, v in data[name].items() if t <= DECODE_MAX_TOKENS)
            if pts:
                ax.plot([q[0] for q in pts], [q[1] for q in pts], style, color=color, label=name)
        decode = sorted({t for d in data.values() for t in d if t <= DECODE_MAX_TOKENS})
        labels = [str(t) for t in decode]
        if p["floor"] is not None:
            ax.axhline(p["floor"], color="gray", ls=":", label=f"memory floor {p['floor']:.4f} ms")
            g = data["symmem graph"]
            labels = [f"{t}\n{g[t] / p['floor']:.2f}x" if t in g else str(t) for t in decode]
        ax.set_xticks(decode)
        ax.set_xticklabels(labels, fontsize=8)
        ax.minorticks_off()
        ax.set_ylim(bottom=0)
        ax.set_xlabel("tokens per step" + ("\n(under each: symmem graph / memory floor)" if p["floor"] else ""))
        ax.set_ylabel("ms per step")
        ax.set_title(f"tp {p['tp']} ({gpus}): decode", fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
        missing = [] if p["twin"] else ["PyTorch twin: no records at this tp"]
        if p["floor"] is None:
            missing.append("memory floor: not recorded")
        if missing:
            ax.text(0.02, 0.02, "; ".join(missing), transform=ax.transAxes, fontsize=7, color="gray")
        if big:
            ax = row[1]
            toks = sorted({t for d in data.values() for t in d if t > DECODE_MAX_TOKENS})
            names = [n for n in lines if any(t in data[n] for t in toks)]
            w = 0.8 / max(1, len(names))
            for i, name in enumerate(names):
                xs = [j + i * w for j, t in enumerate(toks) if t in data[name]]
                ys = [data[name][t] for t in toks if t in data[name]]
                ax.bar(xs, ys, w, color=lines[name][1], label=name)
                for x, y in zip(xs, ys):
                    ax.annotate(f"{y:.2f}", (x, y), textcoords="offset points", xytext=(0, 2), ha="center",
                                fontsize=7)
            ax.set_xticks([j + w * (len(names) - 1) / 2 for j in range(len(toks))])
            ax.set_xticklabels([str(t) for t in toks])
            ax.set_xlabel("tokens per step")
            ax.set_ylabel("ms per step")
            ax.set_title(f"tp {p['tp']}: prefill", fontsize=9)
            ax.grid(True, axis="y", alpha=0.3)
            ax.set_ylim(0, 1.4 * max([v for n in names for t, v in data[n].items() if t in toks] + [1e-9]))
            ax.legend(fontsize=7, loc="upper center", ncol=2)
    fig.suptitle(f"tp_mlp (SwiGLU MLP, hidden {hidden}, ffn {ffn}, {layers} layer(s), {dtype}) against the "
                 f"PyTorch twin\n{device_of(run['records'])}, run {run['name']}", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "mlp-step.svg")
    save(fig, path)
    print(f"{PROG}: wrote {os.path.relpath(path, ROOT)} from run {run['name']}")
    for p in panels:
        print(f"  tp {p['tp']}: {p['src']}; {len(p['twin'])} PyTorch twin step records"
              + (f" ({p['twin'][0]['_file']})" if p["twin"] else ""))
    for tp, s in others:
        print(f"  not plotted: step records of tp {tp} at size {s} (another model size)")


def plot_allreduce(plt, run, out):
    recs = run["records"]
    counts = sorted({ranks_of(r) for r in recs if is_sweep(r) or is_torch_ar(r)})
    fig, axes = plt.subplots(1, len(counts), figsize=(6.4 * len(counts), 4.4), squeeze=False)
    styles = {"symmem_sym": ("o-", "symmem, symmetric buffer"),
              "symmem_plain": ("o--", "symmem, plain buffer"),
              "raw_registered": ("^-", "raw ncclAllReduce, registered window"),
              "graph_sym": ("o:", "symmem symmetric, CUDA graph replay")}
    for ax, n in zip(axes[0], counts):
        sweep = [r for r in recs if is_sweep(r) and ranks_of(r) == n]
        sweep = best_segment(sweep) if sweep else []
        for variant, (style, label) in styles.items():
            pts = sorted((r["bytes"], r["us"]) for r in sweep if r.get("variant") == variant)
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label)
        torch = [r for r in recs if is_torch_ar(r) and ranks_of(r) == n and r.get("mode") == "eager"
                 and r.get("available", True) is not False]
        torch = best_segment(torch) if torch else []
        pts = sorted((r["bytes"], r["us_median"]) for r in torch)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "s-", color="tab:red", label="PyTorch all_reduce (eager)")
        notes = []
        if not sweep:
            notes.append("symmem sweep: no records")
        if not pts:
            notes.append("PyTorch: no records" + (" (its bench runs only with 2+ GPUs)" if n == 1 else ""))
        if notes:
            ax.text(0.02, 0.02, "; ".join(notes), transform=ax.transAxes, fontsize=8, color="gray")
        ax.set_xscale("log", base=2)
        ys = [line.get_ydata() for line in ax.get_lines()]
        ys = [float(v) for y in ys for v in y if v > 0]
        if ys and max(ys) / min(ys) > 20:  # several GPUs: microseconds to milliseconds
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        sizes = sorted({r["bytes"] for r in sweep} | {q[0] for q in pts})
        ax.set_xticks(sizes)
        ax.set_xticklabels([human_bytes(b) for b in sizes], rotation=45, ha="right", fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("buffer size (bf16, sum, in place)")
        ax.set_ylabel("µs per all-reduce (slowest rank)")
        title = f"{n} GPU{'s' if n > 1 else ''}"
        if n == 1:
            title += " (one rank moves no data: launch cost only)"
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"All-reduce time by size\n{device_of(recs)}, run {run['name']}", fontsize=10)
    fig.tight_layout()
    path = os.path.join(out, "allreduce.svg")
    save(fig, path)
    print(f"{PROG}: wrote {os.path.relpath(path, ROOT)} from run {run['name']} (rank counts: "
          f"{', '.join(map(str, counts))})")


def save(fig, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})


# ----------------------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    ap.add_argument("--results", default=DEFAULT_RESULTS, help="folder of run folders (default docs/results)")
    ap.add_argument("--run", help="run folder name for both plots (default: the newest run with the records)")
    ap.add_argument("--out", default=DEFAULT_OUT, help="where the SVGs go (default docs/img)")
    ap.add_argument("--only", choices=("mlp", "allreduce"), help="make one plot only")
    ap.add_argument("--check", action="store_true", help="parse every log, print record counts per run, plot nothing")
    ap.add_argument("--list", action="store_true", help="print the runs in time order and their record kinds")
    a = ap.parse_args(argv)

    runs = load_runs(a.results)
    if a.check or a.list:
        total, bad = 0, 0
        for run in runs:
            kinds = {}
            for r in run["records"]:
                k = classify(r)
                kinds[k] = kinds.get(k, 0) + 1
            total += len(run["records"])
            bad += len(run["bad"])
            when = run["key"][0]
            print(f"{run['name']}  ({when:%Y-%m-%d %H:%M} UTC)  {len(run['records'])} records"
                  + (f", {len(run['bad'])} unparsable" if run["bad"] else ""))
            for k in sorted(kinds):
                print(f"    {kinds[k]:5d}  {k}")
            for b in run["bad"]:
                print(f"    unparsable RESULT line: {b}")
        print(f"{PROG}: {len(runs)} runs, {total} records, {bad} unparsable RESULT lines")
        print(f"  MLP plot default run: {holders(runs, lambda r: is_mlp(r) and r['kind'] == 'step').split(', ')[-1]}")
        print(f"  all-reduce plot default run: {holders(runs, lambda r: is_sweep(r) or is_torch_ar(r)).split(', ')[-1]}")
        return 1 if (a.check and bad) else 0

    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("matplotlib is not installed: python3 -m pip install matplotlib", 3)
    plt.rcParams["svg.hashsalt"] = "symmem"
    plt.rcParams["svg.fonttype"] = "none"

    if a.only in (None, "mlp"):
        run = pick_run(runs, a.run, lambda r: is_mlp(r) and r["kind"] == "step", "tp_mlp step records")
        plot_mlp(plt, run, a.out)
    if a.only in (None, "allreduce"):
        run = pick_run(runs, a.run, lambda r: is_sweep(r) or is_torch_ar(r),
                       "all-reduce sweep records (cuda_allreduce or allreduce_bench)")
        plot_allreduce(plt, run, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
