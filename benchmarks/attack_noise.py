"""How random the attacked model is, and what the success check buys (the figures of the README's
attack section): `python benchmarks/attack_noise.py --checkpoint=runs/smoke` (about 3 minutes on a
2-core CPU).

On the first --shapes test shapes of the run's smoke attack data (configs/attack.py:smoke):
  * randomness at each (N, t) of --settings: the logits of two evaluation keys, their largest and
    mean absolute difference and the share of shapes on which the two predictions agree;
  * the swing of PGD's iterate: targeted PGD at --eps for --steps steps with the success check off,
    each iterate scored with the evaluation key (per shape: how often target-or-not flips, whether
    any iterate reached the target, whether the last did), with the model's noise fixed and with
    fresh noise;
  * the same PGD with the check on (--success-draws): the share of returned clouds that reach the
    target;
  * the check's cost: one gradient pass against one check of --success-draws forward passes (timed).
With --json one line per (N, t) setting as soon as it is measured, then the summary line. Always
exits 0 when the checkpoint loads.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from configs import attack as attack_config  # noqa: E402
from ddjax import attacks, evaluation, robustness  # noqa: E402


def swing(logits_fn, points, target, eval_key, attack_key, *, eps, steps, success_draws):
    """PGD with curve_every = 1: per shape, flips of (pred == target), reached at any step, at the
    last step, and whether the returned cloud reaches the target (all scored with eval_key)."""
    adv, info = jax.jit(
        lambda p: attacks.pgd(
            logits_fn,
            p,
            target,
            attack_key,
            eps=eps,
            steps=steps,
            curve_every=1,
            eval_key=eval_key,
            success_draws=success_draws,
        )
    )(points)
    hit = np.asarray(info["curve"])[1:] == np.asarray(target)[None]  # (steps, B): iterates 1..steps
    returned = np.asarray(jnp.argmax(logits_fn(adv, eval_key), -1)) == np.asarray(target)
    return {
        "flips_mean": float(np.abs(np.diff(hit.astype(int), axis=0)).sum(0).mean()),
        "reached_any_step": float(hit.any(0).mean()),
        "reached_last_step": float(hit[-1].mean()),
        "returned_reaches": float(returned.mean()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="runs/smoke")
    parser.add_argument(
        "--data-dir", default="", help="where the smoke data is prepared (default: tfds's)"
    )
    parser.add_argument("--shapes", type=int, default=48)
    parser.add_argument("--settings", default="1:0,2:100")
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--success-draws", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    config = attack_config.get_config("smoke")
    config.checkpoint, config.max_shapes, config.batch_size = (
        args.checkpoint,
        args.shapes,
        args.shapes,
    )
    if args.data_dir:
        config.data_dir = args.data_dir
    with tempfile.TemporaryDirectory() as tmp:
        ev = evaluation.load_evaluation(config, pathlib.Path(tmp))
    batch = robustness.load_batches(ev.builder, config)[0]
    points = jnp.asarray(batch["points"][batch["valid"]])
    eval_key, other_key = jax.random.key(1), jax.random.key(2)
    attack_key, fixed = jax.random.key(3), jax.random.key(4)
    report = {
        "checkpoint": args.checkpoint,
        "step": ev.step,
        "shapes": int(points.shape[0]),
        "eps": args.eps,
        "steps": args.steps,
        "success_draws": args.success_draws,
        "settings": [],
    }
    for n, t in robustness.parse_settings(args.settings):
        logits_fn = robustness.build_logits(
            ev.model_config, ev.variables, ev.text_features, config.ratio, n, t
        )
        a, b = jax.jit(logits_fn)(points, eval_key), jax.jit(logits_fn)(points, other_key)
        row = {
            "num_paths": n,
            "t": t,
            "logit_diff_max": float(jnp.abs(a - b).max()),
            "logit_diff_mean": float(jnp.abs(a - b).mean()),
            "same_prediction": float((a.argmax(-1) == b.argmax(-1)).mean()),
        }
        target = attacks.second_best(a)
        for name, fn in (
            ("fixed_noise", attacks.fixed_noise(logits_fn, fixed)),
            ("fresh_noise", logits_fn),
        ):
            row[name] = {
                f"check_{d}": swing(
                    fn,
                    points,
                    target,
                    fixed if name == "fixed_noise" else eval_key,
                    attack_key,
                    eps=args.eps,
                    steps=args.steps,
                    success_draws=d,
                )
                for d in (0, args.success_draws)
            }
        loss = lambda x, k: attacks.targeted_cross_entropy(logits_fn(x, k), target).sum()
        grad = jax.jit(lambda x, k: jax.grad(loss)(x, k))
        check = jax.jit(
            lambda x, k: attacks.reaches_target(logits_fn, x, target, k, args.success_draws)
        )
        times = {}
        for label, fn in (("gradient_s", grad), ("check_s", check)):
            jax.block_until_ready(fn(points, attack_key))
            start = time.perf_counter()
            for _ in range(3):
                jax.block_until_ready(fn(points, attack_key))
            times[label] = (time.perf_counter() - start) / 3
        row.update(times, check_over_gradient=times["check_s"] / times["gradient_s"])
        report["settings"].append(row)
        if args.json:
            common.emit(row, True)
        else:
            print(
                f"N={n} t={t}: two keys' logits differ by up to {row['logit_diff_max']:.2f} (mean "
                f"{row['logit_diff_mean']:.3f}), same prediction on "
                f"{100 * row['same_prediction']:.0f}% of "
                f"{report['shapes']} shapes; check ({args.success_draws} draws) / gradient pass = "
                f"{row['check_over_gradient']:.2f}",
                flush=True,
            )
            for name in ("fixed_noise", "fresh_noise"):
                for d, s in row[name].items():
                    print(
                        f"  PGD-{args.steps} eps {args.eps} {name} {d}: {s['flips_mean']:.1f} "
                        "flips per shape, "
                        f"target reached at some step {100 * s['reached_any_step']:.0f}%, at the "
                        "last "
                        f"{100 * s['reached_last_step']:.0f}%, returned cloud "
                        f"{100 * s['returned_reaches']:.0f}%",
                        flush=True,
                    )
    if args.json:
        common.summary(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
