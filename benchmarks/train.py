"""Training benchmark: the full train step (tokenization, model, losses, backward, AdamW) per teacher mode and dtype.

  python benchmarks/train.py            # CPU: base model, batch 32, float32, both modes (about 3 minutes on 2 cores)
  python benchmarks/train.py --json
  python benchmarks/train.py --batches=128 --dtypes=bfloat16 --modes=online   # one configuration
  python benchmarks/train.py --variant=tiny --batches=8 --points=256 --clip=tiny   # a quick look

Defaults: on CPU batch 32, float32, `cached` and `online`; on an accelerator batch 128 (the paper's), float32 and
bfloat16, both modes. `cached` mode is the Dual Denoising step alone; `online` adds the frozen CLIP image tower on
the batch's views (`--clip=base`: the ViT-B/32 architecture with random weights, nothing downloaded, the same
cost; `--clip=tiny`: a 2-layer tower for quick runs). `--dtypes` sets the model's compute dtype (parameters stay
float32); the CLIP tower runs in float32.

Per configuration: step time (median), steps/s, samples/s, XLA's FLOP count and peak-memory estimate, achieved
FLOP/s; where the device reports it, the allocator's peak bytes in use (`memory_stats()`: exact when the process
measures one configuration, so `make device-check` runs one per process); on a device with a known datasheet
peak the MFU (XLA's FLOPs / step time / dense peak of the dtype; float32 counts as TF32 on NVIDIA GPUs); and at
batch 128 on an accelerator the hours of the paper's full pretraining (301 epochs x 409 steps) at that step time.
Always exits 0.
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

PAPER_STEPS = 301 * (52470 // 128)  # ShapeNet-55 train + test, drop_last, epochs 0..300 = 123,109 steps


def clip_tower(kind: str, projection_dim: int):
    """(model, params, image_size) of a random-weight FlaxCLIPModel: the real ViT-B/32 shape or a tiny one."""
    from transformers import CLIPConfig, FlaxCLIPModel

    if kind == "base":
        config = CLIPConfig(projection_dim=projection_dim)  # ViT-B/32: 224 px, width 768, 12 layers
    else:
        from ddjax.teachers import tiny_clip
        config = tiny_clip.tiny_clip_config(image_size=32, width=32, layers=2, projection_dim=projection_dim,
                                            vocab_size=1000)
    model = FlaxCLIPModel(config, seed=0)
    return model, model.params, config.vision_config.image_size


def build_step(variant: str, batch_size: int, points: int, dtype: str, online: bool, clip: str):
    config = dd.model_config(variant, dtype=dtype)
    loss_fn = dd.make_train_loss(config)
    tx = optim.adamw(optim.epoch_schedule(base_lr=5e-4, warmup_epochs=10, epochs=300, steps_per_epoch=409),
                     weight_decay=0.05)
    variables = jax.jit(lambda k: dd.init_variables(config, k))(jax.random.key(0))
    rng = np.random.default_rng(0)
    d = config.teacher_dim
    batch = {"points": jnp.asarray(rng.normal(size=(batch_size, points, 3)).astype(np.float32)),
             "text_features": jnp.asarray(rng.normal(size=(batch_size, d)).astype(np.float32))}
    clip_model = clip_params = None
    if online:
        clip_model, clip_params, size = clip_tower(clip, d)
        batch["image"] = jnp.asarray(rng.normal(size=(batch_size, size, size, 3)).astype(np.float32))
    else:
        batch["image_features"] = jnp.asarray(rng.normal(size=(batch_size, d)).astype(np.float32))

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


def measure(variant: str, batch_size: int, points: int, dtype: str, online: bool, clip: str, repeats: int) -> dict:
    step, args = build_step(variant, batch_size, points, dtype, online, clip)
    compiled = step.lower(*args).compile()
    costs = common.compiled_costs(compiled)
    seconds = common.median_time(lambda: compiled(*args)[3], repeats)
    flops = costs["flops"]
    row = {"mode": "online" if online else "cached", "dtype": dtype, "batch": batch_size, "variant": variant,
           "points": points, "clip": clip if online else None, "step_s": seconds, "steps_per_s": 1 / seconds,
           "samples_per_s": batch_size / seconds, "flops_per_step": flops,
           "achieved_flops_per_s": flops / seconds if flops else None, "xla_peak_bytes": costs["xla_peak_bytes"]}
    peak = common.peak_flops(dtype)
    if jax.default_backend() != "cpu" and flops and peak:
        row["peak_flops"] = peak
        row["mfu"] = flops / seconds / peak
    if jax.default_backend() != "cpu" and batch_size == 128 and variant == "base":
        row["paper_run_hours"] = PAPER_STEPS * seconds / 3600
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    on_cpu = jax.default_backend() == "cpu"
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batches", default="32" if on_cpu else "128")
    parser.add_argument("--dtypes", default="float32" if on_cpu else "float32,bfloat16")
    parser.add_argument("--modes", default="cached,online", help="cached, online or both")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--clip", default="base", choices=("base", "tiny"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"cached", "online"}:
        parser.error(f"--modes takes cached and/or online, got {args.modes!r}")
    configs = [(b, dtype, mode) for b in common.int_list(args.batches) for dtype in args.dtypes.split(",")
               for mode in modes]
    rows = [measure(args.variant, b, args.points, dtype, mode == "online", args.clip, args.repeats)
            for b, dtype, mode in configs]
    if len(rows) == 1:  # the allocator's peak is a process-lifetime maximum: exact for one configuration only
        rows[0]["device_peak_bytes"] = common.device_peak_bytes()
    info = common.machine()
    if args.json:
        print(json.dumps({"machine": info, "paper_steps": PAPER_STEPS, "results": rows}, indent=2))
        return 0
    print(f"{args.variant} model train step on {info}")
    for r in rows:
        extra = "".join([f", MFU {r['mfu']:.1%}" if r.get("mfu") else "",
                         f", device peak {r['device_peak_bytes'] / 2**30:.2f} GiB" if r.get("device_peak_bytes") else "",
                         f", paper run {r['paper_run_hours']:.1f} h" if r.get("paper_run_hours") else ""])
        gflops = f"{r['achieved_flops_per_s'] / 1e9:.0f} GFLOP/s" if r["achieved_flops_per_s"] else "n/a"
        peak = f"{r['xla_peak_bytes'] / 2**30:.2f} GiB" if r["xla_peak_bytes"] else "n/a"
        print(f"  {r['mode']:6s} {r['dtype']:8s} batch {r['batch']:3d}: {r['step_s']:.3f} s/step, "
              f"{r['samples_per_s']:.1f} samples/s, {gflops}, peak memory (XLA estimate) {peak}{extra}")
    return 0


if __name__ == "__main__":
    common.run(main)
