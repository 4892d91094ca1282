#!/usr/bin/env python3
"""PyTorch twin of the symmem `tp_mlp` example at tp=1 (one GPU).

Llama-style SwiGLU MLP in the row-major form of `examples/tp_mlp/src/model.rs`:

    x: [tokens, hidden]   W_gate, W_up: [hidden, ffn]   W_down: [ffn, hidden]
    h = silu(x @ W_gate) * (x @ W_up)        y = h @ W_down        x <- x + y

stacked `--layers` times (one step = all layers). As in the Rust example, gate and up are
stored side by side as one [hidden, 2*ffn] matrix (gate columns, then up columns) and computed
by one GEMM; `--no-fuse` runs the two projections as separate GEMMs instead.

Weights and the input come from the seeded generator of `examples/tp_mlp/src/gen.rs` (spec in
README.md and in `_spec_doc` below), so both sides compute with the same numbers. Values are
generated in float64 and rounded ONCE to the storage type exactly as the Rust example does
(`T::from_f64` of the `half` crate 2.7.1 for bf16/f16, `as f32` for f32), carried to the GPU
as float32 (exact for every bf16/f16 value) and cast there (exact). Note that `half`'s
`bf16::from_f64` decides rounding from the upper 32 bits of the float64 only (its sticky bit
ignores the low 32 mantissa bits) and `f16::from_f64` on x86 with F16C goes through f32
(`f as f32`, then round to nearest even): both are reproduced here bit for bit. A plain
`torch.tensor(v64).to(torch.bfloat16)` differs from Rust in about 6 elements in 10^5
(checked against half 2.7.1 on 16M generated values: bf16, f16 and f32 all bit-identical).

Measured in one run (median over iterations, CUDA events, unless noted):
  * per step, eager and as a replay of a `torch.cuda.graph` capture of one step; the mean over
    back-to-back iterations (wall clock, the method of the Rust example) is reported too;
  * device copy bandwidth: a device-to-device copy of `--copy-bytes` (2 GiB), counting bytes
    read + written (2 * size / time), plus a 64 MiB copy (the size the Rust example probes);
    a read-only rate (torch.sum over the same 2 GiB as float32) is reported alongside;
  * the memory floor per step = total weight bytes / copy bandwidth (read + write rate, the
    usual proxy for the achievable read bandwidth; the read-only floor is reported too);
  * the cuBLAS GEMM rate (TFLOP/s, 2*m*k*n / time) of the step's shapes for every token count
    (prefill: tokens 4096 -> [4096,4096]x[4096,28672] fused gate-up, [4096,14336]x[14336,4096]).
  * `--check`: relative error ||y - ref|| / ||ref|| of the first `--check-rows` rows against an
    float64 reference computed on the GPU from the same (storage-rounded) weights, with the
    bounds of the Rust example (f32 1e-5, bf16 2e-2, f16 1e-2).

Output: a human table, and one `RESULT {json}` line per measurement (grep '^RESULT ').
Other modes (no GPU or torch needed): `--dump-checksum` (checksums of the tiny hidden 8 /
ffn 16 weights, same text as `cargo run --example tp_mlp -- --dump-checksum`) and
`--self-test` (the generator's test vectors, shared with tests/tp_mlp.rs).

Exit codes: 0 ok, 1 check failed or run error, 2 bad arguments, 3 CUDA/torch unavailable.
"""

import os

# Forced, not setdefault: never NVLS / multicast, whatever the caller's environment says.
os.environ["NCCL_NVLS_ENABLE"] = "0"
os.environ["TORCH_SYMM_MEM_DISABLE_MULTICAST"] = "1"
os.environ["NVSHMEM_DISABLE_NVLS"] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from decimal import Decimal  # noqa: E402

PROG = "tp_mlp_torch.py"
EXIT_CHECK_FAILED = 1
EXIT_BAD_ARGS = 2
EXIT_NO_CUDA = 3

# ---------------------------------------------------------------------------------------------
# The generator (spec shared with examples/tp_mlp/src/gen.rs)
# ---------------------------------------------------------------------------------------------

_spec_doc = """
splitmix64(z): z = (z + 0x9E3779B97F4A7C15) mod 2^64
               z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 mod 2^64
               z = (z ^ (z >> 27)) * 0x94D049BB133111EB mod 2^64
               return z ^ (z >> 31)
element i (row-major flat index of the full tensor) of tensor t with seed s:
  u     = (splitmix64((s * 0x100000001B3 mod 2^64) ^ (t << 40) ^ i) >> 11) * 2^-53
  value = (2u - 1) * scale            (all in float64)
tensor ids: layer l: gate 3l, up 3l+1, down 3l+2; input x: 1_000_000
scale: 1/sqrt(fan_in) for weights (hidden for gate and up, ffn for down), 1.0 for x
"""

MASK64 = (1 << 64) - 1
SEED_MUL = 0x100000001B3
C_ADD = 0x9E3779B97F4A7C15
C_MUL1 = 0xBF58476D1CE4E5B9
C_MUL2 = 0x94D049BB133111EB
INPUT_TENSOR = 1_000_000
TWO_POW_M53 = 1.0 / float(1 << 53)

# Relative-error bounds of the Rust example (config.rs, Dtype::bound).
BOUNDS = {"f32": 1e-5, "bf16": 2e-2, "f16": 1e-2}
DTYPE_ALIASES = {
    "f32": "f32", "fp32": "f32", "float32": "f32",
    "bf16": "bf16", "bfloat16": "bf16",
    "f16": "f16", "fp16": "f16", "float16": "f16", "half": "f16",
}
STORAGE_BYTES = {"f32": 4, "bf16": 2, "f16": 2}


def splitmix64(z):
    """SplitMix64's output function of state `z` (Python ints, wrapping mod 2^64)."""
    z = (z + C_ADD) & MASK64
    z = ((z ^ (z >> 30)) * C_MUL1) & MASK64
    z = ((z ^ (z >> 27)) * C_MUL2) & MASK64
    return z ^ (z >> 31)


def tensor_base(seed, tensor):
    """`s * 0x100000001B3 ^ (t << 40)` (mod 2^64): element i hashes `base ^ i`."""
    return ((seed * SEED_MUL) & MASK64) ^ ((tensor << 40) & MASK64)


def value(seed, tensor, index, scale):
    """Element `index` of tensor `tensor` (float64), scalar reference implementation."""
    h = splitmix64(tensor_base(seed, tensor) ^ index)
    u = float(h >> 11) * TWO_POW_M53
    return (2.0 * u - 1.0) * scale


def weight_shape(kind, hidden, ffn):
    return (hidden, ffn) if kind in ("gate", "up") else (ffn, hidden)


def weight_scale(kind, hidden, ffn):
    fan_in = weight_shape(kind, hidden, ffn)[0]
    return 1.0 / math.sqrt(fan_in)


def weight_id(kind, layer):
    return 3 * layer + {"gate": 0, "up": 1, "down": 2}[kind]


def checksum(seed, tensor, scale, n):
    """Sum and sum of squares in float64, in flat-index order (as gen::checksum)."""
    s = 0.0
    sq = 0.0
    for i in range(n):
        v = value(seed, tensor, i, scale)
        s += v
        sq += v * v
    return s, sq


# --- rounding to the storage type exactly like the Rust example (half 2.7.1) -----------------

def half_bf16_bits_from_f64(v):
    """`half::bf16::from_f64(v).to_bits()` (scalar; port of half 2.7.1 f64_to_bf16)."""
    import struct

    val = struct.unpack("<Q", struct.pack("<d", v))[0]
    x = val >> 32
    sign = x & 0x80000000
    exp = x & 0x7FF00000
    man = x & 0x000FFFFF
    if exp == 0x7FF00000:
        nan_bit = 0 if (man == 0 and (val & 0xFFFFFFFF) == 0) else 0x0040
        return ((sign >> 16) | 0x7F80 | nan_bit | (man >> 13)) & 0xFFFF
    half_sign = sign >> 16
    half_exp = ((exp >> 20) - 1023) + 127
    if half_exp >= 0xFF:
        return half_sign | 0x7F80
    if half_exp <= 0:
        if 7 - half_exp > 21:
            return half_sign
        man = man | 0x00100000
        half_man = man >> (14 - half_exp)
        round_bit = 1 << (13 - half_exp)
        if (man & round_bit) != 0 and (man & (3 * round_bit - 1)) != 0:
            half_man += 1
        return half_sign | half_man
    half_exp = half_exp << 7
    half_man = man >> 13
    round_bit = 0x00001000
    if (man & round_bit) != 0 and (man & (3 * round_bit - 1)) != 0:
        return (half_sign | half_exp | half_man) + 1
    return half_sign | half_exp | half_man


def _np():
    try:
        import numpy as np
    except ImportError:
        sys.stderr.write(f"{PROG}: numpy is required for the vectorized generator\n")
        sys.exit(EXIT_NO_CUDA)
    return np


def round_storage_np(v64, dtype):
    """float64 array -> float32 array holding the storage-type values (as Rust's from_f64)."""
    np = _np()
    if dtype == "f32":
        return v64.astype(np.float32)
    if dtype == "f16":
        # half::f16::from_f64 on x86 with F16C (runtime-detected, `std` feature): `f as f32`,
        # then the F16C conversion with round-to-nearest-even; numpy's f32->f16 is RNE too.
        return v64.astype(np.float32).astype(np.float16).astype(np.float32)
    if dtype == "bf16":
        bits = v64.view(np.uint64)
        x = (bits >> np.uint64(32)).astype(np.uint32)
        sign = x & np.uint32(0x80000000)
        exp = x & np.uint32(0x7FF00000)
        man = x & np.uint32(0x000FFFFF)
        half_exp = (exp >> np.uint32(20)).astype(np.int64) - 1023 + 127
        zero = (exp == 0) & (man == 0)
        normal = (half_exp > 0) & (half_exp < 0xFF)
        if not bool(np.all(normal | zero)):
            # Subnormal/inf/NaN never occur for this generator; keep exactness anyway.
            out = np.empty(v64.shape, dtype=np.uint32)
            flat = v64.reshape(-1)
            for k in range(flat.size):
                out.reshape(-1)[k] = half_bf16_bits_from_f64(float(flat[k]))
            return (out << np.uint32(16)).view(np.float32)
        h = (sign >> np.uint32(16)) | (half_exp.astype(np.uint32) << np.uint32(7)) | (
            man >> np.uint32(13)
        )
        rnd = ((man & np.uint32(0x1000)) != 0) & ((man & np.uint32(0x2FFF)) != 0)
        h = h + rnd.astype(np.uint32)
        h = np.where(zero, sign >> np.uint32(16), h).astype(np.uint32)
        return (h << np.uint32(16)).view(np.float32)
    raise ValueError(dtype)


def gen_f64_np(seed, tensor, start, stop, scale):
    """Elements [start, stop) of tensor `tensor` as a float64 numpy array (vectorized spec)."""
    np = _np()
    base = np.uint64(tensor_base(seed, tensor))
    with np.errstate(over="ignore"):
        z = np.arange(start, stop, dtype=np.uint64)
        z ^= base
        z += np.uint64(C_ADD)
        t = z >> np.uint64(30)
        z ^= t
        z *= np.uint64(C_MUL1)
        np.right_shift(z, np.uint64(27), out=t)
        z ^= t
        z *= np.uint64(C_MUL2)
        np.right_shift(z, np.uint64(31), out=t)
        z ^= t
        np.right_shift(z, np.uint64(11), out=z)
    f = z.astype(np.float64)
    f *= TWO_POW_M53  # exact
    f *= 2.0  # exact
    f -= 1.0  # exact
    f *= scale  # the one rounding, as in Rust
    return f


def gen_tensor_np(seed, tensor, shape, scale, dtype, chunk=1 << 22, threads=None):
    """The full tensor, rounded to `dtype`, as a float32 numpy array of `shape`."""
    np = _np()
    n = 1
    for d in shape:
        n *= d
    out = np.empty(n, dtype=np.float32)

    def work(a):
        b = min(a + chunk, n)
        out[a:b] = round_storage_np(gen_f64_np(seed, tensor, a, b, scale), dtype)

    starts = list(range(0, n, chunk))
    threads = threads or min(16, os.cpu_count() or 1)
    if threads > 1 and len(starts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as ex:
            list(ex.map(work, starts))
    else:
        for a in starts:
            work(a)
    return out.reshape(shape)


# --- formatting like Rust's {:e} and {:+.17e} (so --dump-checksum output can be diffed) ------

def rust_e(v):
    """Rust `format!("{:e}", v)` for a finite f64: shortest round-trip digits."""
    if v == 0.0:
        return "-0e0" if math.copysign(1.0, v) < 0 else "0e0"
    sign, digits, exp = Decimal(repr(v)).as_tuple()
    ds = "".join(str(d) for d in digits).rstrip("0") or "0"
    e10 = len(digits) - 1 + exp
    mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return ("-" if sign else "") + mant + "e" + str(e10)


def rust_fixed_e(v, prec, plus=False):
    """Rust `{:.prec e}` / `{:+.prec e}`: exponent without sign padding (e0, e-1)."""
    s = f"{v:+.{prec}e}" if plus else f"{v:.{prec}e}"
    mant, e = s.split("e")
    return mant + "e" + str(int(e))


def dump_checksums(seed, layers):
    """Same text as `cargo run --example tp_mlp -- --dump-checksum --seed S --layers L`."""
    hidden, ffn = 8, 16
    print(f"tp_mlp checksums: hidden {hidden}, ffn {ffn}, seed {seed}; f64 sums in flat-index order")
    for layer in range(layers):
        for kind in ("gate", "up", "down"):
            r, c = weight_shape(kind, hidden, ffn)
            tid = weight_id(kind, layer)
            s, sq = checksum(seed, tid, weight_scale(kind, hidden, ffn), r * c)
            print(
                f"layer {layer} {kind:<4} [{r}, {c}]  sum {rust_fixed_e(s, 17, plus=True)}"
                f"  sumsq {rust_fixed_e(sq, 17)}"
            )
            print(
                "CHECKSUM {"
                f'"layer":{layer},"tensor":"{kind}","id":{tid},"shape":[{r},{c}],'
                f'"seed":{seed},"sum":{rust_e(s)},"sumsq":{rust_e(sq)}'
                "}"
            )
    x0 = value(seed, INPUT_TENSOR, 0, 1.0)
    print(f"x[0, 0] = {rust_fixed_e(x0, 17, plus=True)} (input tensor id {INPUT_TENSOR})")


def self_test():
    """Test vectors shared with tests/tp_mlp.rs; also checks numpy == scalar. Returns ok."""
    ok = True

    def expect(name, got, want):
        nonlocal ok
        good = got == want
        ok &= good
        print(f"  {'ok  ' if good else 'FAIL'} {name}: {got!r}" + ("" if good else f" (want {want!r})"))

    print(f"{PROG} --self-test: generator test vectors (tests/tp_mlp.rs)")
    expect("splitmix64(0)", hex(splitmix64(0)), hex(0xE220A8397B1DCDAF))
    expect("splitmix64(1)", hex(splitmix64(1)), hex(0x910A2DEC89025CC1))
    expect("value(0, 0, 0, 1)", value(0, 0, 0, 1.0), 0.7666216164272852)
    expect("value(42, x, 17, 1)", value(42, INPUT_TENSOR, 17, 1.0), 0.9266598382561719)
    expect("value(5, 3, 2, 1/sqrt 24)", value(5, 3, 2, 1.0 / math.sqrt(24.0)), -0.08337709404619367)
    expect(
        "checksum(7, gate0, 8x16)",
        checksum(7, 0, 1.0 / math.sqrt(8.0), 8 * 16),
        (-1.568776550003546, 5.599080351471588),
    )
    # bf16 rounding port: a few hand cases (1.0, 1 + 2^-8 exact tie -> even, just above tie).
    expect("bf16(1.0)", hex(half_bf16_bits_from_f64(1.0)), "0x3f80")
    expect("bf16(1+2^-8) tie->even", hex(half_bf16_bits_from_f64(1.0 + 2.0 ** -8)), "0x3f80")
    expect("bf16(1+3*2^-8) tie->even", hex(half_bf16_bits_from_f64(1.0 + 3 * 2.0 ** -8)), "0x3f82")
    # half ignores the low 32 mantissa bits: tie + 2^-40 still rounds to even (down) there.
    expect("bf16(1+2^-8+2^-40) (half quirk)", hex(half_bf16_bits_from_f64(1.0 + 2.0 ** -8 + 2.0 ** -40)), "0x3f80")
    try:
        import numpy as np
    except ImportError:
        print("  skip numpy cross-checks (numpy not installed)")
        return ok
    for seed, tid, n, scale in [(7, 0, 128, 1.0 / math.sqrt(8.0)), (3, INPUT_TENSOR, 1000, 1.0), (11, 5, 777, 0.125)]:
        vec = gen_f64_np(seed, tid, 0, n, scale)
        ref = [value(seed, tid, i, scale) for i in range(n)]
        expect(f"numpy == scalar (seed {seed}, t {tid}, n {n})", bool(np.array_equal(vec, np.array(ref))), True)
        bf = round_storage_np(vec, "bf16").view(np.uint32) >> np.uint32(16)
        bref = np.array([half_bf16_bits_from_f64(v) for v in ref], dtype=np.uint32)
        expect(f"bf16 numpy == scalar port (seed {seed})", bool(np.array_equal(bf, bref)), True)
    # The bf16 vector path on tie-like values and the quirk.
    probe = np.array([1.0, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8, 1.0 + 2.0 ** -8 + 2.0 ** -40, -0.75, 0.0,
                      1.0 + 2.0 ** -8 + 2.0 ** -20], dtype=np.float64)
    got = (round_storage_np(probe, "bf16").view(np.uint32) >> np.uint32(16)).tolist()
    want = [half_bf16_bits_from_f64(float(v)) for v in probe]
    expect("bf16 vector path on ties", got, want)
    return ok


# ---------------------------------------------------------------------------------------------
# Torch part
# ---------------------------------------------------------------------------------------------

def emit(rec):
    print("RESULT " + json.dumps(rec, separators=(",", ":"), allow_nan=False, default=str), flush=True)


def num(v):
    return None if v is None or not math.isfinite(v) else float(v)


def require_cuda():
    try:
        import torch  # noqa: F401
    except ImportError as e:
        sys.stderr.write(f"{PROG}: PyTorch is not installed ({e}); this benchmark needs torch with CUDA. "
                         "--dump-checksum and --self-test work without it.\n")
        sys.exit(EXIT_NO_CUDA)
    import torch

    if not torch.cuda.is_available():
        sys.stderr.write(
            f"{PROG}: CUDA is unavailable (torch {torch.__version__}, built for CUDA {torch.version.cuda}); "
            "this benchmark needs an NVIDIA GPU. --dump-checksum and --self-test work without one.\n"
        )
        sys.exit(EXIT_NO_CUDA)
    return torch


def parse_tokens(s):
    out = []
    for part in s.split(","):
        part = part.strip()
        if not part:
            raise argparse.ArgumentTypeError(f"--tokens `{s}` has an empty item; write a list like 1,8,32")
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"--tokens: `{part}` is not an integer")
        if n < 1:
            raise argparse.ArgumentTypeError("--tokens must be at least 1")
        out.append(n)
    return out


def parse_dtype(s):
    d = DTYPE_ALIASES.get(s.strip().lower())
    if d is None:
        raise argparse.ArgumentTypeError(f"unknown dtype `{s}`; use f32, bf16 or f16")
    return d


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog=PROG,
        description="PyTorch tp=1 twin of the symmem tp_mlp example: SwiGLU MLP step time (eager and "
        "CUDA-graph replay), device copy bandwidth, memory floor and cuBLAS GEMM rate, with weights from "
        "the example's seeded generator.",
        epilog="Prints a table and one 'RESULT {json}' line per measurement. Exit codes: 0 ok, 1 check "
        "failed or run error, 2 bad arguments, 3 CUDA/torch unavailable.",
    )
    p.add_argument("--tokens", type=parse_tokens, default=parse_tokens("1,8,32,64,4096"),
                   help="comma-separated token counts (default 1,8,32,64,4096)")
    p.add_argument("--hidden", type=int, default=4096, help="hidden size (default 4096)")
    p.add_argument("--ffn", type=int, default=14336, help="FFN size (default 14336)")
    p.add_argument("--layers", type=int, default=1, help="stacked layers, x = x + mlp_l(x) (default 1)")
    p.add_argument("--dtype", type=parse_dtype, default="bf16", help="bf16 | f32 | f16 (default bf16)")
    p.add_argument("--iters", type=int, default=50, help="timed iterations per measurement (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed iterations first (default 5)")
    p.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    p.add_argument("--check", action="store_true",
                   help="compare the first --check-rows output rows with a float64 reference (GPU)")
    p.add_argument("--check-rows", type=int, default=16, help="rows checked by --check (default 16)")
    p.add_argument("--no-graph", action="store_true", help="skip the CUDA graph capture/replay")
    p.add_argument("--no-fuse", action="store_true",
                   help="separate gate and up GEMMs (default: one fused [hidden, 2*ffn] GEMM, as the Rust example)")
    p.add_argument("--copy-bytes", type=int, default=2 << 30,
                   help="bytes of the bandwidth probe copy (default 2 GiB)")
    p.add_argument("--dump-checksum", action="store_true",
                   help="print sum / sum of squares of each weight for hidden 8, ffn 16 (no GPU needed) and exit")
    p.add_argument("--self-test", action="store_true",
                   help="check the generator against the Rust test vectors (no GPU needed) and exit")
    a = p.parse_args(argv)
    for name in ("hidden", "ffn", "layers", "iters", "check_rows"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if a.warmup < 0 or a.seed < 0 or a.seed > MASK64:
        p.error("--warmup must be >= 0 and --seed in [0, 2^64)")
    if a.copy_bytes < (1 << 20):
        p.error("--copy-bytes must be at least 1 MiB")
    return a


def event_times_ms(torch, fn, iters, warmup):
    """Per-iteration CUDA-event times (ms) of `fn` after `warmup` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iters)]
    for i in range(iters):
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends)]


def wall_mean_ms(torch, fn, iters):
    """Mean over back-to-back iterations, wall clock, synchronized at both ends (Rust's method)."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) / iters * 1e3


def main(argv=None):
    args = parse_args(argv)
    if args.self_test:
        ok = self_test()
        print("self-test:", "PASS" if ok else "FAIL")
        return 0 if ok else EXIT_CHECK_FAILED
    if args.dump_checksum:
        dump_checksums(args.seed, args.layers)
        return 0

    torch = require_cuda()
    import torch.nn.functional as F

    dev = torch.device("cuda", torch.cuda.current_device())
    tdtype = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}[args.dtype]
    hidden, ffn, L = args.hidden, args.ffn, args.layers
    fused = not args.no_fuse
    dev_name = torch.cuda.get_device_name(dev)
    common = {
        "bench": "tp_mlp_torch",
        "hidden": hidden,
        "ffn": ffn,
        "layers": L,
        "dtype": args.dtype,
        "fused_gate_up": fused,
        "device": dev_name,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "seed": args.seed,
    }
    cublas_flags = {
        "allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "allow_bf16_reduced_precision_reduction": bool(
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction),
        "allow_fp16_reduced_precision_reduction": bool(
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction),
    }

    # --- weights and input ------------------------------------------------------------------
    def upload(tensor_id, shape, scale):
        arr = gen_tensor_np(args.seed, tensor_id, shape, scale, args.dtype)
        return torch.from_numpy(arr).to(dev).to(tdtype)

    t0 = time.perf_counter()
    sys.stderr.write(f"{PROG}: generating {L} layer(s) of hidden {hidden} x ffn {ffn} ({args.dtype}) "
                     f"from seed {args.seed}\n")
    layers = []
    for layer in range(L):
        sg, sd = weight_scale("gate", hidden, ffn), weight_scale("down", hidden, ffn)
        wg = upload(weight_id("gate", layer), (hidden, ffn), sg)
        wu = upload(weight_id("up", layer), (hidden, ffn), sg)
        wd = upload(weight_id("down", layer), (ffn, hidden), sd)
        if fused:
            wgu = torch.cat([wg, wu], dim=1).contiguous()
            del wg, wu
            layers.append((wgu, None, wd))
        else:
            layers.append((wg, wu, wd))
    max_t = max(args.tokens)
    x_all = upload(INPUT_TENSOR, (max_t, hidden), 1.0)
    torch.cuda.synchronize()
    gen_s = time.perf_counter() - t0
    weight_bytes = 3 * hidden * ffn * L * STORAGE_BYTES[args.dtype]
    sys.stderr.write(f"{PROG}: weights ready in {gen_s:.1f} s ({weight_bytes / 2**20:.1f} MiB)\n")

    def step(x):
        for wa, wb, wd in layers:
            if wb is None:
                gu = x @ wa
                h = F.silu(gu[:, :ffn]) * gu[:, ffn:]
            else:
                h = F.silu(x @ wa) * (x @ wb)
            x = x + h @ wd
        return x

    # --- bandwidth probes -----------------------------------------------------------------
    bw = {}
    for label, nbytes in (("copy", args.copy_bytes), ("copy_64mib", 64 << 20)):
        src = torch.zeros(nbytes, dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        ts = event_times_ms(torch, lambda: dst.copy_(src), 10, 2)
        med = statistics.median(ts)
        bw[label] = 2.0 * nbytes / (med * 1e-3) / 1e9
        emit({**common, "kind": "copy_bw", "probe": label, "bytes": nbytes, "counted": "read+write",
              "ms": med, "gbps": bw[label]})
        if label == "copy":
            f32view = src.view(torch.float32)
            ts = event_times_ms(torch, lambda: f32view.sum(), 10, 2)
            med = statistics.median(ts)
            bw["read"] = nbytes / (med * 1e-3) / 1e9
            emit({**common, "kind": "read_bw", "probe": "torch.sum f32", "bytes": nbytes, "counted": "read",
                  "ms": med, "gbps": bw["read"]})
        del src, dst
    torch.cuda.empty_cache()
    floor_ms = weight_bytes / (bw["copy"] * 1e9) * 1e3
    floor_read_ms = weight_bytes / (bw["read"] * 1e9) * 1e3
    emit({**common, "kind": "memory_floor", "weight_bytes": weight_bytes, "copy_gbps": bw["copy"],
          "floor_ms": floor_ms, "read_gbps": bw["read"], "floor_read_ms": floor_read_ms,
          "note": "floor_ms = weight bytes / device copy rate counted as read+write bytes "
                  "(proxy for read bandwidth); floor_read_ms uses the torch.sum read rate"})

    # --- per token count ------------------------------------------------------------------
    rows = []
    all_pass = True
    for t in args.tokens:
        x = x_all[:t].contiguous()
        rec_t = {**common, "tokens": t}
        eager_out = step(x)
        torch.cuda.synchronize()

        ts = event_times_ms(torch, lambda: step(x), args.iters, args.warmup)
        eager_ms = statistics.median(ts)
        eager_mean = wall_mean_ms(torch, lambda: step(x), args.iters)
        emit({**rec_t, "kind": "step", "mode": "eager", "ms_per_step": eager_ms,
              "ms_per_step_min": min(ts), "ms_per_step_mean_wall": eager_mean, "iters": args.iters})

        graph_ms = None
        bit_exact = None
        if not args.no_graph:
            static_x = x.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                for _ in range(3):
                    step(static_x)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                static_out = step(static_x)
            g.replay()
            torch.cuda.synchronize()
            bit_exact = bool(torch.equal(static_out, eager_out))
            ts = event_times_ms(torch, g.replay, args.iters, args.warmup)
            graph_ms = statistics.median(ts)
            graph_mean = wall_mean_ms(torch, g.replay, args.iters)
            emit({**rec_t, "kind": "step", "mode": "graph", "ms_per_step": graph_ms,
                  "ms_per_step_min": min(ts), "ms_per_step_mean_wall": graph_mean, "iters": args.iters,
                  "bit_exact_vs_eager": bit_exact})
            del g, static_out, static_x

        # GEMM rates of this step's shapes (layer 0).
        wa, wb, wd = layers[0]
        gemms = []
        if wb is None:
            gemms.append(("gate_up", x, wa))
        else:
            gemms.append(("gate", x, wa))
            gemms.append(("up", x, wb))
        if wb is None:
            gu = x @ wa
            h0 = (F.silu(gu[:, :ffn]) * gu[:, ffn:]).contiguous()
            del gu
        else:
            h0 = (F.silu(x @ wa) * (x @ wb)).contiguous()
        gemms.append(("down", h0, wd))
        tflops = {}
        for name, a, b in gemms:
            m, k = a.shape
            n = b.shape[1]
            c = torch.empty(m, n, dtype=tdtype, device=dev)
            ts = event_times_ms(torch, lambda: torch.matmul(a, b, out=c), args.iters, max(2, min(args.warmup, 5)))
            med = statistics.median(ts)
            tflops[name] = 2.0 * m * k * n / (med * 1e-3) / 1e12
            emit({**rec_t, "kind": "gemm", "gemm": name, "mkn": [m, k, n], "ms": med, "tflops": tflops[name],
                  **cublas_flags})
            del c
        del h0

        err = None
        passed = True
        if args.check:
            r = min(t, args.check_rows)
            ref = x[:r].double()
            for wa_, wb_, wd_ in layers:
                if wb_ is None:
                    gu = ref @ wa_.double()
                    h = F.silu(gu[:, :ffn]) * gu[:, ffn:]
                    del gu
                else:
                    h = F.silu(ref @ wa_.double()) * (ref @ wb_.double())
                ref = ref + h @ wd_.double()
                del h
            out = eager_out[:r].double()
            err = float(torch.linalg.vector_norm(out - ref) / torch.linalg.vector_norm(ref))
            passed = err <= BOUNDS[args.dtype]
            all_pass &= passed
            emit({**rec_t, "kind": "check", "rows": r, "rel_error": num(err), "bound": BOUNDS[args.dtype],
                  "pass": passed, "out_row0_sum": float(eager_out[0].double().sum()),
                  "ref_row0_sum": float(ref[0].sum())})
            del ref, out
        rows.append((t, eager_ms, graph_ms, bit_exact, tflops, err, passed))
        del eager_out, x
        torch.cuda.empty_cache()

    # --- table --------------------------------------------------------------------------
    print()
    print(f"{PROG}: SwiGLU MLP on one GPU (PyTorch twin of examples/tp_mlp at tp=1)")
    print(f"  device       {dev_name} (torch {torch.__version__}, CUDA {torch.version.cuda})")
    print(f"  sizes        hidden {hidden}, ffn {ffn}, layers {L}, dtype {args.dtype}, "
          f"gate/up {'fused (one GEMM)' if fused else 'separate GEMMs'}")
    print(f"  weights      {weight_bytes / 2**20:.1f} MiB, generated from seed {args.seed} in {gen_s:.1f} s")
    print(f"  bandwidth    copy {bw['copy']:.1f} GB/s (read+write, {args.copy_bytes >> 20} MiB), "
          f"64 MiB copy {bw['copy_64mib']:.1f} GB/s, read-only (sum) {bw['read']:.1f} GB/s")
    print(f"  floor        {floor_ms:.4f} ms/step at the copy rate ({floor_read_ms:.4f} ms at the read rate)")
    print(f"  timing       median of {args.iters} CUDA-event-timed iterations after {args.warmup} warm-up")
    print(f"  cuBLAS       allow_tf32={cublas_flags['allow_tf32']}, bf16 reduced-precision reduction="
          f"{cublas_flags['allow_bf16_reduced_precision_reduction']}")
    print()
    gemm_cols = ["gate_up", "down"] if fused else ["gate", "up", "down"]
    head = f"  {'tokens':>6} | {'eager ms':>10} | {'graph ms':>10} | {'floor ms':>9} | " + " | ".join(
        f"{c + ' TF/s':>12}" for c in gemm_cols) + f" | {'rel err':>9} | {'result':>6}"
    print(head)
    print("  " + "-" * (len(head) - 2))
    for t, e, gms, exact, tf, err, passed in rows:
        gtxt = "-" if gms is None else f"{gms:.4f}" + ("" if exact in (None, True) else "*")
        print(f"  {t:>6} | {e:>10.4f} | {gtxt:>10} | {floor_ms:>9.4f} | " + " | ".join(
            f"{tf.get(c, float('nan')):>12.4g}" for c in gemm_cols)
              + f" | {('-' if err is None else f'{err:.2e}'):>9} | {('PASS' if passed else 'FAIL') if err is not None else '-':>6}")
    if any(r[3] is False for r in rows):
        print("  * graph replay output differs from the eager output")
    print()
    if args.check:
        print(f"  check: {'PASS' if all_pass else 'FAIL'} (bound {BOUNDS[args.dtype]:.0e})")
    return 0 if all_pass else EXIT_CHECK_FAILED


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
