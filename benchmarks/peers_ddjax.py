"""ddjax's side of `benchmarks/peers.py`: one measurement in this process, printed as one JSON line
(the same fields as `peers_recon.py`).

  python benchmarks/peers_ddjax.py --what train_step --batch 32
  python benchmarks/peers_ddjax.py --what zeroshot_n8_t600 --batch 64

train_step: the Dual Denoising train step with cached teacher features (`benchmarks/train.py`'s
step: tokenization, model, losses, backward, AdamW), the state donated and carried from step to
step as the trainer does; 1024 points, 64 x 32 groups, the encoder on all 64 tokens.
zeroshot_n1 / zeroshot_n8_t0 / zeroshot_n8_t600: jitted parallel noise inference at N paths and
timestep t, as the zeroshot job runs it. `--remat` recomputes each block's activations in the
backward pass (the model's `remat`; the same values). Random weights and clouds (the speed does
not depend on them); the first call (compilation) is not timed and is reported as `first_call_s`.
`flops`: the matrix multiplies one call executes (`common.matmul_flops`, recomputed blocks
included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from benchmarks import train as train_benchmark  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402

ZEROSHOT = {"zeroshot_n1": (1, 0), "zeroshot_n8_t0": (8, 0), "zeroshot_n8_t600": (8, 600)}


def clouds(batch: int, points: int) -> jax.Array:
    """f32[B, N, 3]: random clouds in the unit ball."""
    x = np.random.default_rng(0).normal(size=(batch, points, 3)).astype(np.float32)
    return jnp.asarray(x / np.linalg.norm(x, axis=-1).max(axis=1)[:, None, None])


def train_step(config, batch: int):
    """(a function running one step and blocking on it, the first call's seconds, its matmul
    FLOPs)."""
    step, abstract, make_args = train_benchmark.build_step(
        config, batch, 1024, online=False, clip="base", donate=True
    )
    flops = common.matmul_flops(step, *abstract)
    state = list(make_args())

    def run():
        params, stats, opt_state, loss = step(*state)
        state[:3] = params, stats, opt_state
        jax.block_until_ready(loss)

    start = time.perf_counter()
    run()
    return run, time.perf_counter() - start, flops


def zeroshot(config, batch: int, num_paths: int, t: int):
    variables = jax.jit(lambda k: dd.init_variables(config, k))(jax.random.key(0))
    infer = jax.jit(dd.make_inference(config).infer, static_argnames=("t", "num_paths"))
    points = clouds(batch, 1024)
    call = lambda v, p: infer(v, p, jax.random.key(1), t=t, num_paths=num_paths)
    flops = common.matmul_flops(call, variables, points)
    run = lambda: jax.block_until_ready(call(variables, points))
    start = time.perf_counter()
    run()
    return run, time.perf_counter() - start, flops


def peak_bytes() -> int:
    stats = jax.devices()[0].memory_stats() if jax.default_backend() != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--what", required=True, choices=("train_step", *ZEROSHOT))
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--remat", action="store_true", help="--config.model.remat=True")
    args = parser.parse_args()
    config = dd.model_config(args.variant, dtype=args.dtype, remat=args.remat)
    if args.what == "train_step":
        run, first, flops = train_step(config, args.batch)
    else:
        run, first, flops = zeroshot(config, args.batch, *ZEROSHOT[args.what])
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    row = {
        "what": args.what,
        "impl": "ddjax",
        "device": jax.devices()[0].device_kind,
        "dtype": args.dtype,
        "remat": args.remat,
        "batch": args.batch,
        "times_s": times,
        "first_call_s": first,
        "peak_bytes": peak_bytes(),
        "params": dd.parameter_counts(config)["total"],
        "flops": flops,
        "jax": jax.__version__,
    }
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
