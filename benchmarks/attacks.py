"""Attack benchmark: shapes/s of a 50-step targeted PGD against the base model with N = 8 noise
paths, or against a peer's model (Table 2's other columns).

  python benchmarks/attacks.py          # 50 steps timed directly: about 12 minutes on a 2-core CPU
  python benchmarks/attacks.py --json
  python benchmarks/attacks.py --quick  # 5 and 10 steps, the fixed cost apart, 50 estimated
  python benchmarks/attacks.py --variant=tiny --batch=2 --points=256   # a quick look
  python benchmarks/attacks.py --model=uni3d_tiny --quick   # a peer: N = 1, t = 0, paper mode,
                                                            # its own points per cloud (10,000)

`--model`: dual_denoising (default, `--variant` sized) or a peer as configs/convert.py names it
(recon, ulip_pointbert, ulip2_pointbert, uni3d_<size>) at its published size and input, random
weights.

The attack as the attack job runs it (ddjax/robustness.py: clean scoring, PGD with its per-step
multi-draw success check over `--success-draws` draws (8, the job's default), adversarial scoring;
without Figure 8's curve points; random weights, speed does not depend on them) at t = 500, 1024
points, on the default backend (the GPU when one is present), in paper mode and in EOT mode with M =
2 draws. Each program is compiled ahead of time (its compile time reported apart) and run once.
`--quick` runs 5 and 10 steps instead: per step = (t10 - t5) / 5, fixed = t5 - 5 x per step, and the
50-step time is fixed + 50 x per step, marked as estimated. With --json one line per mode as soon as
it is measured, then the summary line. Always exits 0.
"""

from __future__ import annotations

import argparse
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
from ddjax.models import peers, registry  # noqa: E402


def model_under_attack(args):
    """(model config, Inference, N, t, modes) of --model: Dual Denoising at --variant, N =
    --num_paths, t = 500; a peer at its published size, N = 1, t = 0, paper mode only
    (deterministic)."""
    if args.model == "dual_denoising":
        config = dd.model_config(args.variant)
        return config, registry.inference(config), args.num_paths, 500, args.modes
    kind, fixed = peers.kind_of(args.model)
    config = peers.model_config(kind, **fixed)
    args.points = args.points or config.npoints
    args.success_draws = min(args.success_draws, 1)  # as the attack job: every draw is the same
    return config, registry.inference(config), 1, 0, "paper"


def time_pgd(args, logits_fn, points, keys, eps, cw, mode, m, draws, batch) -> dict:
    """One measurement row: PGD-50 (or the --quick estimate) in `mode` with `draws` success
    draws (0: no check), compiled ahead of time."""
    times, compile_s = {}, 0.0
    for steps in (5, 10) if args.quick else (50,):
        fn = robustness.make_attack_step(
            logits_fn,
            "pgd",
            mode=mode,
            eot_samples=m,
            draws_per_step=dd.default_paths_per_step(),
            steps=steps,
            curve_every=0,
            cw_config=cw,
            success_draws=draws,
        )
        start = time.perf_counter()
        compiled = fn.lower(points, *keys, eps).compile()
        compile_s += time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(compiled(points, *keys, eps))
        times[steps] = time.perf_counter() - start
        print(
            f"{mode}, {draws} success draws: {steps} steps in {times[steps]:.1f} s (compiling "
            f"{compile_s:.0f} s so far)",
            file=sys.stderr,
            flush=True,
        )  # long on a CPU: what is done so far
    row = {
        "mode": mode,
        "eot_samples": m,
        "success_draws": draws,
        "measured": times,
        "compile_s": compile_s,
        "estimated": args.quick,
    }
    if args.quick:
        per_step = (times[10] - times[5]) / 5
        row.update(per_step_s=per_step, fixed_s=times[5] - 5 * per_step)
        row["seconds_50_steps"] = row["fixed_s"] + 50 * per_step
    else:
        row["seconds_50_steps"] = times[50]
    row["shapes_per_s"] = batch / row["seconds_50_steps"]
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", default="dual_denoising", choices=("dual_denoising",) + peers.CONVERTIBLE
    )
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batch", type=int, default=0, help="0: 8 on CPU, 32 elsewhere")
    parser.add_argument("--points", type=int, default=0, help="0: 1024, a peer's own input")
    parser.add_argument("--num_paths", type=int, default=8, help="N")
    parser.add_argument(
        "--quick", action="store_true", help="estimate 50 steps from 5- and 10-step runs"
    )
    parser.add_argument("--success-draws", type=int, default=8)
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help="skip the same attack without the success check (its cost ratio)",
    )
    parser.add_argument("--modes", default="paper,eot", help="paper (M = 1) and/or eot (M = 2)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    on_cpu = jax.default_backend() == "cpu"
    batch = args.batch or (8 if on_cpu else 32)
    config, inference, num_paths, t, args.modes = model_under_attack(args)
    args.points = args.points or 1024
    variables = jax.jit(lambda k: registry.init_variables(config, k))(jax.random.key(0))
    points = np.random.default_rng(0).normal(size=(batch, args.points, 3)).astype(np.float32)
    points = jnp.asarray(points / np.linalg.norm(points, axis=-1).max(axis=1)[:, None, None])
    text = jax.random.normal(jax.random.key(2), (40, config.teacher_dim))
    logits_fn = attacks.zero_shot_logits(
        inference.infer,
        variables,
        text,
        ratio=0.25,
        t=t,
        num_paths=num_paths,
        feature_types=inference.feature_types,
    )
    cw = ml_collections.ConfigDict(
        dict(
            search_steps=1,
            iterations=1,
            learning_rate=0.01,
            initial_lambda=10.0,
            lower=0.0,
            upper=80.0,
        )
    )
    eps = jnp.asarray([0.01])
    keys = (jax.random.key(3), jax.random.key(4))
    rows = []
    modes = [m for m in args.modes.split(",") if m]
    if not modes or set(modes) - {"paper", "eot"}:
        parser.error(f"--modes={args.modes!r}: a comma-separated subset of paper,eot")
    measure = lambda mode, m, draws: time_pgd(
        args, logits_fn, points, keys, eps, cw, mode, m, draws, batch
    )
    for mode, m in (("paper", 1), ("eot", 2)):
        if mode not in modes:
            continue
        with_check = measure(mode, m, args.success_draws)
        rows.append(with_check)
        common.emit(with_check, args.json)
        if args.success_draws and not args.no_baseline:
            # the same attack without the success check: what the check costs
            without = measure(mode, m, 0)
            rows.append(without)
            common.emit(without, args.json)
            share = {
                "mode": mode,
                "success_draws": args.success_draws,
                "check_cost_ratio": with_check["seconds_50_steps"] / without["seconds_50_steps"]
                - 1.0,
            }
            rows.append(share)
            common.emit(share, args.json)
    info = {
        **common.machine(),
        "model": args.model,
        "variant": args.variant if args.model == "dual_denoising" else args.model,
        "batch": batch,
        "points": args.points,
        "num_paths": num_paths,
        "t": t,
        "device_peak_bytes": common.device_peak_bytes(),
    }
    if args.json:
        common.summary({"machine": info, "results": rows})
        return 0
    print(
        f"{info['variant']} model, targeted PGD-50 at eps 0.01, N = {num_paths}, t = {t}, batch "
        f"{batch} x "
        f"{args.points} points, {info}"
    )
    for r in rows:
        if "check_cost_ratio" in r:
            print(
                f"  {r['mode']:5s} the success check ({r['success_draws']} draws) costs "
                f"{100 * r['check_cost_ratio']:.1f}% of the attack without it"
            )
            continue
        how = (
            f"estimated: fixed {r['fixed_s']:.1f} s + 50 x {r['per_step_s']:.2f} s per step"
            if r["estimated"]
            else "measured"
        )
        print(
            f"  {r['mode']:5s} (M={r['eot_samples']}, {r['success_draws']} success draws): "
            f"{r['shapes_per_s']:.3f} shapes/s, {r['seconds_50_steps']:.0f} s per batch of "
            f"{batch} ({how}; compiling took {r['compile_s']:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    common.run(main)
