"""Training benchmark: the base model's full train step at batch 32, in both teacher modes.

  python benchmarks/train.py            # about 3 minutes on a 2-core CPU
  python benchmarks/train.py --json

`cached` mode: the Dual Denoising step alone (tokenization, model, losses, backward, AdamW). `online` mode:
the same plus the frozen CLIP ViT-B/32 image tower on the batch's 224 x 224 views (random weights of the
real architecture, so nothing is downloaded; the cost is the same). Reports steps/s, samples/s, XLA's
FLOP count and peak-memory estimate, achieved FLOP/s; on a GPU also batch 128, an MFU estimate against the
device's dense peak, and the time of a full paper run (301 epochs of 409 steps at batch 128) from the
measured step time. Always exits 0.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from ddjax import optim  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402

PAPER_STEPS = 301 * (52470 // 128)  # ShapeNet-55 train + test, drop_last, epochs 0..300
DENSE_PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "V100": 125e12}  # bf16 / TF32-class dense


def build_step(batch_size: int, online: bool):
    config = dd.model_config("base")
    loss_fn = dd.make_train_loss(config)
    tx = optim.adamw(optim.epoch_schedule(base_lr=5e-4, warmup_epochs=10, epochs=300, steps_per_epoch=409),
                     weight_decay=0.05)
    variables = jax.jit(lambda k: dd.init_variables(config, k))(jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {"points": jnp.asarray(rng.normal(size=(batch_size, 1024, 3)).astype(np.float32)),
             "text_features": jnp.asarray(rng.normal(size=(batch_size, 512)).astype(np.float32))}
    clip_model = clip_params = None
    if online:
        from transformers import CLIPConfig, FlaxCLIPModel
        clip_model = FlaxCLIPModel(CLIPConfig(), seed=0)  # the ViT-B/32 architecture, random weights
        clip_params = clip_model.params
        batch["image"] = jnp.asarray(rng.normal(size=(batch_size, 224, 224, 3)).astype(np.float32))
    else:
        batch["image_features"] = jnp.asarray(rng.normal(size=(batch_size, 512)).astype(np.float32))

    def step(params, batch_stats, opt_state, batch, clip_params, key):
        if online:
            image = clip_model.get_image_features(pixel_values=jnp.transpose(batch["image"], (0, 3, 1, 2)),
                                                  params=clip_params)
            batch = {**batch, "image_features": jax.lax.stop_gradient(image)}
        (loss, (_, stats)), grads = jax.value_and_grad(
            lambda p: loss_fn({"params": p, "batch_stats": batch_stats}, batch, key), has_aux=True)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(jnp.add, params, updates)
        return params, stats, opt_state, loss

    args = (variables["params"], variables["batch_stats"], tx.init(variables["params"]), batch, clip_params,
            jax.random.key(1))
    return jax.jit(step), args


def measure(batch_size: int, online: bool, repeats: int) -> dict:
    step, args = build_step(batch_size, online)
    compiled = step.lower(*args).compile()
    flops = None
    try:
        cost = compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, (list, tuple)) else cost
        flops = float(cost.get("flops")) if cost and cost.get("flops") else None
    except Exception:
        pass
    peak = None
    try:
        m = compiled.memory_analysis()
        peak = int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes)
    except Exception:
        pass
    seconds = common.median_time(lambda: compiled(*args)[3], repeats)
    row = {"mode": "online" if online else "cached", "batch": batch_size, "step_s": seconds,
           "steps_per_s": 1 / seconds, "samples_per_s": batch_size / seconds, "flops_per_step": flops,
           "achieved_flops_per_s": flops / seconds if flops else None, "peak_bytes": peak}
    kind = jax.devices()[0].device_kind
    peak_flops = next((v for k, v in DENSE_PEAK_FLOPS.items() if k in kind), None)
    if jax.default_backend() == "gpu" and flops and peak_flops:
        row["mfu"] = flops / seconds / peak_flops
    if jax.default_backend() != "cpu" and batch_size == 128:
        row["paper_run_hours"] = PAPER_STEPS * seconds / 3600
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    batches = (32,) if jax.default_backend() == "cpu" else (32, 128)
    rows = [measure(b, online, args.repeats) for b in batches for online in (False, True)]
    info = {"backend": jax.default_backend(), "device": jax.devices()[0].device_kind, "cpu_count": os.cpu_count(),
            "jax": jax.__version__}
    if args.json:
        print(json.dumps({"machine": info, "results": rows}, indent=2))
        return 0
    print(f"base model train step on {info}")
    for r in rows:
        extra = "".join([f", MFU {r['mfu']:.1%}" if r.get("mfu") else "",
                         f", paper run {r['paper_run_hours']:.1f} h" if r.get("paper_run_hours") else ""])
        gflops = f"{r['achieved_flops_per_s'] / 1e9:.0f} GFLOP/s" if r["achieved_flops_per_s"] else "n/a"
        peak = f"{r['peak_bytes'] / 2**30:.2f} GiB" if r["peak_bytes"] else "n/a"
        print(f"  {r['mode']:6s} batch {r['batch']:3d}: {r['step_s']:.3f} s/step, {r['samples_per_s']:.1f} samples/s, "
              f"{gflops}, peak memory {peak}{extra}")
    return 0


if __name__ == "__main__":
    common.run(main)
