"""Attack benchmark: shapes/s of a 50-step targeted PGD against the base model with N = 8 noise paths.

  python benchmarks/attacks.py          # about 4 minutes on a 2-core CPU
  python benchmarks/attacks.py --json
  python benchmarks/attacks.py --measure-50     # time 50 steps directly (one compilation per mode; accelerators)
  python benchmarks/attacks.py --variant=tiny --batch=2 --points=256   # a quick look

The attack as the attack job runs it (ddjax/robustness.py: clean scoring, PGD, adversarial scoring; without
Figure 8's curve points, one extra forward pass per 5 steps; random weights, speed does not depend on them)
at t = 500, 1024 points, on the default backend (the GPU when one is present). A 50-step run takes minutes
per batch on a CPU, so the script compiles the same attack at 2 and 4 steps, times one call of each (after
a warm-up call) and extrapolates linearly to 50 (time(50) = time(2) + 24 x (time(4) - time(2))); with
`--measure-50` it times 50 steps directly. Paper mode and EOT with M = 2 draws. Always exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from ddjax import attacks, robustness  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batch", type=int, default=0, help="0: 8 on CPU, 32 elsewhere")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--paths", type=int, default=8, help="N")
    parser.add_argument("--measure-50", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    on_cpu = jax.default_backend() == "cpu"
    batch = args.batch or (8 if on_cpu else 32)
    config = dd.model_config(args.variant)
    variables = jax.jit(lambda k: dd.init_variables(config, k))(jax.random.key(0))
    points = np.random.default_rng(0).normal(size=(batch, args.points, 3)).astype(np.float32)
    points = jnp.asarray(points / np.linalg.norm(points, axis=-1).max(axis=1)[:, None, None])
    text = jax.random.normal(jax.random.key(2), (40, config.teacher_dim))
    infer, _ = dd.make_inference(config)
    logits_fn = attacks.zero_shot_logits(infer, variables, text, ratio=0.25, t=500,
                                         num_paths=args.paths)
    cw = ml_collections.ConfigDict(dict(search_steps=1, iterations=1, learning_rate=0.01, initial_lambda=10.0,
                                        lower=0.0, upper=80.0))
    eps = jnp.asarray([0.01])
    keys = (jax.random.key(3), jax.random.key(4))
    rows = []
    for mode, m in (("paper", 1), ("eot", 2)):
        times, compile_s = {}, 0.0
        for steps in ((50,) if args.measure_50 else (2, 4)):
            fn = robustness.make_attack_step(logits_fn, "pgd", mode=mode, eot_samples=m,
                                             draws_per_step=dd.default_paths_per_step(), steps=steps,
                                             curve_every=0, cw_config=cw)
            start = time.perf_counter()
            compiled = fn.lower(points, *keys, eps).compile()
            compile_s += time.perf_counter() - start
            times[steps] = common.median_time(lambda: compiled(points, *keys, eps), repeats=1)  # after a warm-up
        t50 = times[50] if args.measure_50 else times[2] + 24 * (times[4] - times[2])
        rows.append({"mode": mode, "eot_samples": m, "measured": times, "seconds_50_steps": t50,
                     "shapes_per_s": batch / t50, "extrapolated": not args.measure_50, "compile_s": compile_s})
    info = {**common.machine(), "variant": args.variant, "batch": batch, "points": args.points, "N": args.paths,
            "t": 500, "device_peak_bytes": common.device_peak_bytes()}
    if args.json:
        print(json.dumps({"machine": info, "results": rows}, indent=2))
        return 0
    print(f"{args.variant} model, targeted PGD-50 at eps 0.01, N = {args.paths}, t = 500, batch {batch} x "
          f"{args.points} points, {info}")
    for r in rows:
        how = "extrapolated from " + ", ".join(f"{s} steps {v:.1f} s" for s, v in r["measured"].items()) \
            if r["extrapolated"] else "measured"
        print(f"  {r['mode']:5s} (M={r['eot_samples']}): {r['shapes_per_s']:.3f} shapes/s, "
              f"{r['seconds_50_steps']:.0f} s per batch of {batch} ({how}; compiling took {r['compile_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    common.run(main)
