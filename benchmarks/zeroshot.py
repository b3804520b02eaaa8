"""Zero-shot inference benchmark: shapes/s of the base model for N = 1 and 8 paths at t = 0 and t =
600.

  python benchmarks/zeroshot.py          # about 2 minutes on a 2-core CPU
  python benchmarks/zeroshot.py --json
  python benchmarks/zeroshot.py --variant=tiny --batch=4 --points=256   # a quick look

Batches of 64 clouds of 1024 points (the evaluation batch), random weights (speed does not depend on
them), jitted parallel noise inference as the zeroshot job runs it, on the default backend (CPU
here; the GPU when one is present). `compile_s` is the first call's time less one timed call. With
--json one line per measurement as soon as it is timed, then the summary line. Always exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--num_paths", default="1,8", help="N values")
    parser.add_argument("--t", default="0,600", help="t values")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    config = dd.model_config(args.variant)
    variables = jax.jit(lambda k: dd.init_variables(config, k))(jax.random.key(0))
    points = np.random.default_rng(0).normal(size=(args.batch, args.points, 3)).astype(np.float32)
    points = jnp.asarray(points / np.linalg.norm(points, axis=-1).max(axis=1)[:, None, None])
    infer = jax.jit(dd.make_inference(config).infer, static_argnames=("t", "num_paths"))
    rows = []
    for t in common.int_list(args.t):
        for num_paths in common.int_list(args.num_paths):
            call = lambda: infer(variables, points, jax.random.key(1), t=t, num_paths=num_paths)
            _, first_s = common.timed(call)  # compilation and one run
            s = common.median_time(call, args.repeats)
            rows.append(
                {
                    "t": t,
                    "num_paths": num_paths,
                    "seconds_per_batch": s,
                    "shapes_per_s": args.batch / s,
                    "ms_per_shape": 1e3 * s / args.batch,
                    "compile_s": max(first_s - s, 0.0),
                }
            )
            common.emit(rows[-1], args.json)
    info = {
        **common.machine(),
        "variant": args.variant,
        "batch": args.batch,
        "points": args.points,
        "device_peak_bytes": common.device_peak_bytes(),
    }
    if args.json:
        common.summary({"machine": info, "results": rows})
        return 0
    print(
        f"{args.variant} model zero-shot inference, batch {args.batch} x {args.points} points, "
        f"{info}"
    )
    for r in rows:
        print(
            f"  t={r['t']:3d} N={r['num_paths']:2d}: {r['shapes_per_s']:7.1f} shapes/s "
            f"({r['ms_per_shape']:.1f} ms/shape)"
        )
    return 0


if __name__ == "__main__":
    common.run(main)
