"""Model benchmark: the base Dual Denoising model's forward, train step and parallel noise
inference.

  python benchmarks/model.py              # base model, batch 32, 1024 points (about 3 minutes)
  python benchmarks/model.py --json       # the same as JSON
  python benchmarks/model.py --variant=tiny --batch=4 --points=256 --num_paths=1,2   # a quick look

Measures, in one process: the training forward (tokenization + model + losses) and the train step
(forward + backward + AdamW) at batch 32, samples/s, XLA's peak-memory estimate for the step; and
parallel noise inference for N = 1, 8, 16 at t = 0 and t = 600, as a ratio to N = 1 at the same t.
Goals: the train step no slower than ReCon's PyTorch step with all 64 tokens on the same kind of
machine (about 3.9 s on the project's 2-core CPU machine); N = 8 at t = 0 at most 2x N = 1; N = 8 at
t = 600 at most 8x. Each measurement has its compile seconds; with --json each is one line as soon
as it is timed, then the summary line. Always exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402

RECON_STEP_SECONDS_2CORE = 3.9  # ReCon's PyTorch step (batch 32, 1024 points, all 64 tokens, fp32)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument(
        "--num_paths",
        default="1,8,16",
        help="N values for parallel noise inference (first is the base)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    config = dd.model_config(args.variant)
    b, n, d = args.batch, args.points, config.teacher_dim
    rng = np.random.default_rng(0)
    points = rng.normal(size=(b, n, 3)).astype(np.float32)
    points /= np.linalg.norm(points, axis=-1).max(axis=1)[:, None, None]
    batch = {
        "points": jnp.asarray(points),
        "image_features": jnp.asarray(rng.normal(size=(b, d)).astype(np.float32)),
        "text_features": jnp.asarray(rng.normal(size=(b, d)).astype(np.float32)),
    }
    variables = jax.jit(lambda k: dd.init_variables(config, k))(jax.random.key(0))
    loss_fn = dd.make_train_loss(config)
    tx = optax.adamw(5e-4, weight_decay=0.05)

    def train_step(params, batch_stats, opt_state, batch, key):
        def f(p):
            return loss_fn({"params": p, "batch_stats": batch_stats}, batch, key)

        (loss, (_, new_stats)), grads = jax.value_and_grad(f, has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    results = {
        "variant": args.variant,
        "batch": b,
        "points": n,
        **common.machine(),
        "parameters": dd.parameter_counts(config)["total"],
    }
    forward = jax.jit(loss_fn)
    call = lambda: forward(variables, batch, jax.random.key(1))[0]
    _, first_s = common.timed(call)
    results["forward_s"] = common.median_time(call, args.repeats)
    common.emit(
        {
            "what": "forward",
            "s": results["forward_s"],
            "compile_s": max(first_s - results["forward_s"], 0),
        },
        args.json,
    )

    opt_state = tx.init(variables["params"])
    step_args = (variables["params"], variables["batch_stats"], opt_state, batch, jax.random.key(1))
    compiled, cost = common.lower_and_compile(jax.jit(train_step), *step_args)
    results["train_step_peak_bytes"] = common.compiled_costs(compiled)["xla_peak_bytes"]
    results["train_step_s"] = common.median_time(lambda: compiled(*step_args)[3], args.repeats)
    results["samples_per_s"] = b / results["train_step_s"]
    results["train_step_vs_recon_2core"] = results["train_step_s"] / RECON_STEP_SECONDS_2CORE
    results["train_step_compile_s"] = cost["compile_s"]
    common.emit(
        {
            "what": "train_step",
            "s": results["train_step_s"],
            "samples_per_s": results["samples_per_s"],
            "xla_peak_bytes": results["train_step_peak_bytes"],
            **cost,
        },
        args.json,
    )

    infer = dd.make_inference(config).infer
    infer = jax.jit(infer, static_argnames=("t", "num_paths", "paths_per_step"))
    default_step = dd.default_paths_per_step()
    rows = []
    for t, step in [(0, default_step), (600, default_step), (600, None)]:
        if t == 600 and step is None and default_step is None:
            continue  # the default already is one vmap over all paths
        base = None
        for num_paths in common.int_list(args.num_paths):
            call = lambda: infer(
                variables,
                batch["points"],
                jax.random.key(2),
                t=t,
                num_paths=num_paths,
                paths_per_step=step,
            )
            _, first_s = common.timed(call)
            seconds = common.median_time(call, args.repeats)
            base = seconds if base is None else base
            rows.append(
                {
                    "what": "inference",
                    "t": t,
                    "num_paths": num_paths,
                    "paths_per_step": "all" if step is None else step,
                    "s": seconds,
                    "shapes_per_s": b / seconds,
                    "ratio_to_N1": seconds / base,
                    "compile_s": max(first_s - seconds, 0.0),
                }
            )
            common.emit(rows[-1], args.json)
    results["inference"] = rows
    results["device_peak_bytes"] = common.device_peak_bytes()

    if args.json:
        common.summary(results)
        return 0
    print(
        f"{args.variant} model, {results['parameters'] / 1e6:.1f}M parameters, batch {b} x {n} "
        "points, "
        f"{results['backend']} ({results['device_count']} x {results['device']}, "
        f"{results['cpu_count']} CPUs), "
        f"jax {results['jax']}"
    )
    peak = results["train_step_peak_bytes"]
    print(f"forward (train mode, incl. tokenization and losses): {results['forward_s']:.3f} s")
    print(
        f"train step (forward + backward + AdamW): {results['train_step_s']:.3f} s "
        f"= {results['samples_per_s']:.1f} samples/s; ratio to ReCon's 3.9 s: "
        f"{results['train_step_vs_recon_2core']:.2f}; peak memory (XLA estimate): "
        f"{'n/a' if peak is None else f'{peak / 2**30:.2f} GiB'}"
    )
    print("parallel noise inference:")
    print(f"  {'t':>4s} {'N':>3s} {'paths/step':>10s} {'s':>8s} {'shapes/s':>9s} {'x first':>7s}")
    for r in rows:
        print(
            f"  {r['t']:4d} {r['num_paths']:3d} {str(r['paths_per_step']):>10s} {r['s']:8.3f} "
            f"{r['shapes_per_s']:9.1f} "
            f"{r['ratio_to_N1']:7.2f}"
        )
    return 0


if __name__ == "__main__":
    common.run(main)
