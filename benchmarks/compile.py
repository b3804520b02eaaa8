"""Compile-time benchmark: what a researcher waits for before the first step, and what the cache
saves.

  python benchmarks/compile.py            # base model, about 2 minutes on a 2-core CPU
  python benchmarks/compile.py --json     # one JSON line per measurement, then the summary line

In one process, for the base model's train step (batch 32, cached teachers: loss, backward, AdamW)
and its zero-shot inference (N = 8 paths, t = 600, batch 64: the zeroshot job's function), each at
the model's depth (12 / 4) and at depth 1 / decoder depth 1: the seconds to trace and lower to
StableHLO (`lower_s`), the seconds XLA takes to compile it (`compile_s`), and the operations in the
lowered StableHLO (`hlo_ops`, with the `dot_generals` among them). Nothing is initialised or run:
every argument is a shape.

The first pass compiles with an empty persistent compilation cache (`cache: cold`, a fresh temporary
folder unless --cache-dir names one); then JAX's in-memory caches are cleared and the same functions
are lowered and compiled again (`cache: warm`): what a resumed run or a second evaluation pays
(ddjax/compilation_cache.py).

Goals, as ratios within this one run: base / depth-1 `hlo_ops` <= 1.5 and `compile_s` <=
2.0 (the transformer stacks are scanned, so the program does not grow with the depth); warm / cold
`compile_s` <= 0.2. Always exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks import train as train_bench  # noqa: E402
from ddjax import compilation_cache  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402

GOALS = {
    "hlo_ops_base_over_depth1": 1.5,
    "compile_s_base_over_depth1": 2.0,
    "compile_s_warm_over_cold": 0.2,
}


def train_step(config, batch: int, points: int):
    step, abstract, _ = train_bench.build_step(config, batch, points, online=False, clip="base")
    return step, abstract, {}


def zeroshot(config, batch: int, points: int, num_paths: int, t: int):
    infer = dd.make_inference(config).infer
    variables = jax.eval_shape(lambda k: dd.init_variables(config, k), jax.random.key(0))
    args = (
        variables,
        jax.ShapeDtypeStruct((batch, points, 3), jnp.float32),
        jax.eval_shape(lambda: jax.random.key(1)),
    )
    return (
        jax.jit(infer, static_argnames=("t", "num_paths")),
        args,
        {"t": t, "num_paths": num_paths},
    )


def ratio(rows: list[dict], field: str, num: dict, den: dict) -> float | None:
    pick = lambda want: next(
        (r[field] for r in rows if all(r[k] == v for k, v in want.items())), None
    )
    a, b = pick(num), pick(den)
    return a / b if a is not None and b else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batch", type=int, default=32, help="train-step batch")
    parser.add_argument("--zeroshot-batch", type=int, default=64)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--num_paths", type=int, default=8, help="N of the zero-shot function")
    parser.add_argument("--t", type=int, default=600, help="t of the zero-shot function")
    parser.add_argument("--functions", default="train_step,zeroshot")
    parser.add_argument(
        "--cache-dir", default="", help="the persistent cache (default: a new temporary folder)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    functions = [f for f in args.functions.split(",") if f]
    if set(functions) - {"train_step", "zeroshot"}:
        parser.error(f"--functions takes train_step and/or zeroshot, got {args.functions!r}")
    cache_dir = args.cache_dir or tempfile.mkdtemp(prefix="ddjax-compile-bench-")
    compilation_cache.enable(cache_dir, min_compile_time_s=0.0)
    # the backend's one-time start-up is nobody's compile time
    jax.jit(lambda x: x + 1).lower(1.0).compile()

    base = dd.model_config(args.variant)
    models = [
        (base.depth, base.decoder_depth, base),
        (1, 1, dd.model_config(args.variant, depth=1, decoder_depth=1)),
    ]
    rows = []
    for cache in ("cold", "warm"):
        if cache == "warm":
            # in-memory executables and traces gone: only the persistent cache is left
            jax.clear_caches()
        for function in functions:
            for depth, decoder_depth, config in models:
                if function == "train_step":
                    fn, fn_args, static = train_step(config, args.batch, args.points)
                else:
                    fn, fn_args, static = zeroshot(
                        config, args.zeroshot_batch, args.points, args.num_paths, args.t
                    )
                _, cost = common.lower_and_compile(fn, *fn_args, **static)
                row = {
                    "function": function,
                    "variant": args.variant,
                    "depth": depth,
                    "decoder_depth": decoder_depth,
                    "cache": cache,
                    **{k: round(v, 3) if isinstance(v, float) else v for k, v in cost.items()},
                }
                rows.append(row)
                common.emit(row, args.json)
    ratios, met = {}, {}
    for function in functions:
        full, one = (
            {"function": function, "depth": base.depth, "cache": "cold"},
            {"function": function, "depth": 1, "cache": "cold"},
        )
        ratios[function] = {
            "hlo_ops_base_over_depth1": ratio(rows, "hlo_ops", full, one),
            "compile_s_base_over_depth1": ratio(rows, "compile_s", full, one),
            "compile_s_warm_over_cold": ratio(rows, "compile_s", {**full, "cache": "warm"}, full),
        }
        met[function] = {k: v is not None and v <= GOALS[k] for k, v in ratios[function].items()}
    result = {
        "machine": common.machine(),
        "cache_dir": cache_dir,
        "rows": rows,
        "ratios": ratios,
        "goals": GOALS,
        "goals_met": met,
    }
    if args.json:
        common.summary(result)
        return 0
    print(
        f"compile times on {result['machine']['backend']} ({result['machine']['device']}), jax "
        f"{result['machine']['jax']}"
    )
    print(
        f"{'function':11s} {'depth':>5s} {'dec':>3s} {'cache':5s} {'lower s':>8s} "
        f"{'compile s':>9s} {'hlo ops':>8s}"
    )
    for r in rows:
        print(
            f"{r['function']:11s} {r['depth']:5d} {r['decoder_depth']:3d} {r['cache']:5s} "
            f"{r['lower_s']:8.2f} "
            f"{r['compile_s']:9.2f} {r['hlo_ops']:8d}"
        )
    for function, rs in ratios.items():
        print(
            f"{function}: "
            + ", ".join(
                f"{k} {v:.2f} (goal <= {GOALS[k]}{'' if met[function][k] else ', NOT MET'})"
                if v is not None
                else f"{k} n/a"
                for k, v in rs.items()
            )
        )
    return 0


if __name__ == "__main__":
    common.run(main)
