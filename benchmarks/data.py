"""Input-pipeline benchmark: pretraining samples/s with and without image augmentation, next to the
base model's train-step consumption rate, in one process.

  python benchmarks/data.py     # about 3 minutes on a 2-core CPU (prepares synthetic_shapes once)
  python benchmarks/data.py --json

The pipeline reads the built-in `synthetic_shapes` set (prepared into --data_dir on first use), so
no download is needed. Goal: the input pipeline is never the bottleneck, i.e. at least 2x the train
step's samples/s on the same machine. With --json one line per measurement as soon as it is made,
then the summary line. Always exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from ddjax.data import pipelines, prepare  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402


def pipeline_rate(source, *, image_pipeline, workers: int, batch_size: int, batches: int) -> float:
    transform = pipelines.PretrainTransform(
        num_points=1024, image_pipeline=image_pipeline, num_views=0 if image_pipeline else 8
    )
    loader = pipelines.pretrain_loader(
        source, batch_size=batch_size, seed=0, transform=transform, worker_count=workers
    )
    it = iter(loader)
    next(it)  # start-up (worker processes) is not counted
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / (time.perf_counter() - start)


def train_step_rate(batch_size: int, repeats: int) -> float:
    config = dd.model_config("base")
    variables = jax.jit(lambda k: dd.init_variables(config, k))(jax.random.key(0))
    loss_fn = dd.make_train_loss(config)
    tx = optax.adamw(5e-4, weight_decay=0.05)
    rng = np.random.default_rng(0)
    batch = {
        "points": jnp.asarray(rng.normal(size=(batch_size, 1024, 3)).astype(np.float32)),
        "image_features": jnp.zeros((batch_size, 512)),
        "text_features": jnp.zeros((batch_size, 512)),
    }

    @jax.jit
    def step(params, batch_stats, opt_state):
        (loss, (_, stats)), grads = jax.value_and_grad(
            lambda p: loss_fn({"params": p, "batch_stats": batch_stats}, batch, jax.random.key(1)),
            has_aux=True,
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), stats, opt_state, loss

    state = (variables["params"], variables["batch_stats"], tx.init(variables["params"]))
    return batch_size / common.median_time(lambda: step(*state)[3], repeats)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_dir", default=os.path.expanduser("~/tensorflow_datasets"))
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from absl import flags

    flags.FLAGS.mark_as_parsed()  # grain worker processes read absl flags
    builder = prepare.prepare("synthetic_shapes", args.data_dir)
    source = pipelines.IndexedSource(
        [builder.as_data_source("train"), builder.as_data_source("test")]
    )
    rows = []
    for image_pipeline in (None, "recon", "clip"):
        for workers in (0, 2):
            rate = pipeline_rate(
                source,
                image_pipeline=image_pipeline,
                workers=workers,
                batch_size=args.batch_size,
                batches=args.batches,
            )
            rows.append(
                {
                    "image": image_pipeline or "none (cached teacher)",
                    "workers": workers,
                    "samples_per_s": rate,
                }
            )
            common.emit(rows[-1], args.json)
    step = train_step_rate(args.batch_size, repeats=2)
    common.emit({"what": "train_step", "samples_per_s": step}, args.json)
    for r in rows:
        r["ratio_to_train_step"] = r["samples_per_s"] / step
    result = {
        "backend": jax.default_backend(),
        "cpu_count": os.cpu_count(),
        "batch_size": args.batch_size,
        "train_step_samples_per_s": step,
        "pipelines": rows,
    }
    if args.json:
        common.summary(result)
        return 0
    print(
        f"base train step on {result['backend']} ({result['cpu_count']} CPUs): {step:.1f} "
        "samples/s at batch "
        f"{args.batch_size}"
    )
    print(f"{'image preprocessing':24s} {'workers':>7s} {'samples/s':>10s} {'x train step':>12s}")
    for r in rows:
        print(
            f"{r['image']:24s} {r['workers']:7d} {r['samples_per_s']:10.1f} "
            f"{r['ratio_to_train_step']:12.1f}"
        )
    return 0


if __name__ == "__main__":
    common.run(main)
