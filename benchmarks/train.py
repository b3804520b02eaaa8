"""Training benchmark: the full train step (tokenization, model, losses, backward, AdamW) per
teacher mode and dtype.

  python benchmarks/train.py            # CPU: base, batch 32, float32, both modes (about 3 minutes)
  python benchmarks/train.py --json
  python benchmarks/train.py --batches=128 --dtypes=bfloat16 --modes=online   # one configuration
  python benchmarks/train.py --variant=tiny --batches=8 --points=256 --clip=tiny   # a quick look

Defaults: on CPU batch 32, float32, `cached` and `online`; on an accelerator batch 128 (the
paper's), float32 and bfloat16, both modes. `cached` mode is the Dual Denoising step alone; `online`
adds the frozen CLIP image tower on the batch's views (`--clip=base`: the ViT-B/32 architecture with
random weights, nothing downloaded, the same cost; `--clip=tiny`: a 2-layer tower for quick runs).
`--dtypes` sets the model's compute dtype (parameters stay float32); the CLIP tower runs in float32.

Per configuration: step time (median), steps/s, samples/s, the matrix-multiply FLOPs a step executes
(counted from its jaxpr, scanned stacks times their depth: `common.matmul_flops`; XLA's own count,
`xla_flops_per_step`, sees a loop body once) and achieved FLOP/s, XLA's peak-memory estimate, the
seconds to lower and to compile; where the device reports it, the allocator's peak bytes in use
(`memory_stats()`; every configuration is compiled from shapes first, then they run smallest XLA
estimate first with their arguments freed after each, so the peak read after a configuration that
raised it is exactly its own; one that did not raise it is reported as `device_peak_bytes_at_most`);
on a device with a known datasheet peak the MFU (matmul FLOPs / step time / dense peak of the dtype;
float32 counts as TF32 on NVIDIA GPUs); and at batch 128 on an accelerator the hours of the paper's
full pretraining (301 epochs x 409 steps) at that step time. With --json one line per configuration
as soon as it is measured, then the summary line. Always exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from ddjax import optim  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402

# ShapeNet-55 train + test, drop_last, epochs 0..300 = 123,109 steps
PAPER_STEPS = 301 * (52470 // 128)


def clip_tower(kind: str, projection_dim: int):
    """(model, init, image_size) of a random-weight FlaxCLIPModel, the real ViT-B/32 shape or a tiny
    one; nothing is allocated until `init(key)` makes the parameters (so shapes alone cost no
    memory)."""
    from transformers import CLIPConfig, FlaxCLIPModel

    if kind == "base":
        config = CLIPConfig(projection_dim=projection_dim)  # ViT-B/32: 224 px, width 768, 12 layers
    else:
        from ddjax.teachers import tiny_clip

        # random weights, no tokenizer: special-token ids at the end of the vocabulary
        config = tiny_clip.tiny_clip_config(
            image_size=32,
            width=32,
            layers=2,
            projection_dim=projection_dim,
            vocab_size=1000,
            bos_token_id=998,
            eos_token_id=999,
            pad_token_id=999,
        )
    model = FlaxCLIPModel(config, _do_init=False)
    return (
        model,
        lambda key: model.init_weights(key, model.input_shape),
        config.vision_config.image_size,
    )


def build_step(config, batch_size: int, points: int, online: bool, clip: str, donate: bool = False):
    """(jitted train step, its arguments as shapes, a function that makes them) for the model
    `config`: (params, batch_stats, opt_state, batch, clip_params, key) -> (params, batch_stats,
    opt_state, loss). The shapes lower and compile the step without allocating anything;
    `make_args()` allocates the arguments (random weights and data: speed does not depend on them).
    `donate` donates the state (params, batch_stats, opt_state) as the trainer does.
    """
    loss_fn = dd.make_train_loss(config)
    tx = optim.adamw(
        optim.epoch_schedule(base_lr=5e-4, warmup_epochs=10, epochs=300, steps_per_epoch=409),
        weight_decay=0.05,
    )
    d = config.teacher_dim
    shapes = {"points": (batch_size, points, 3), "text_features": (batch_size, d)}
    clip_model = clip_init = None
    if online:
        clip_model, clip_init, size = clip_tower(clip, d)
        shapes["image"] = (batch_size, size, size, 3)
    else:
        shapes["image_features"] = (batch_size, d)

    def make(key):
        variables = dd.init_variables(config, key)
        k_batch, k_clip = jax.random.split(jax.random.fold_in(key, 1))
        batch = {
            name: jax.random.normal(jax.random.fold_in(k_batch, i), shape)
            for i, (name, shape) in enumerate(sorted(shapes.items()))
        }
        clip_params = clip_init(jax.random.key_data(k_clip)) if online else None
        return (
            variables["params"],
            variables["batch_stats"],
            tx.init(variables["params"]),
            batch,
            clip_params,
            jax.random.fold_in(key, 2),
        )

    def step(params, batch_stats, opt_state, batch, clip_params, key):
        if online:
            image = clip_model.get_image_features(
                pixel_values=jnp.transpose(batch["image"], (0, 3, 1, 2)), params=clip_params
            )
            batch = {**batch, "image_features": jax.lax.stop_gradient(image)}
        (loss, (_, stats)), grads = jax.value_and_grad(
            lambda p: loss_fn({"params": p, "batch_stats": batch_stats}, batch, key), has_aux=True
        )(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(jnp.add, params, updates)
        return params, stats, opt_state, loss

    abstract = jax.eval_shape(make, jax.random.key(0))
    jitted = jax.jit(step, donate_argnums=(0, 1, 2) if donate else ())
    return jitted, abstract, lambda: jax.jit(make)(jax.random.key(0))


def compile_config(
    variant: str,
    batch_size: int,
    points: int,
    dtype: str,
    online: bool,
    clip: str,
    remat: bool = False,
) -> dict:
    """Lowers and compiles one configuration's step from shapes: {'compiled',
    'make_args', 'row'}."""
    config = dd.model_config(variant, dtype=dtype, **({"remat": True} if remat else {}))
    step, abstract, make_args = build_step(config, batch_size, points, online, clip)
    compiled, cost = common.lower_and_compile(step, *abstract)
    costs = common.compiled_costs(compiled)
    row = {
        "mode": "online" if online else "cached",
        "dtype": dtype,
        "batch": batch_size,
        "variant": variant,
        "points": points,
        "clip": clip if online else None,
        "remat": remat,
        **cost,
        "flops_per_step": common.matmul_flops(step, *abstract),
        "xla_flops_per_step": costs["flops"],
        "xla_peak_bytes": costs["xla_peak_bytes"],
    }
    return {"compiled": compiled, "make_args": make_args, "row": row}


def _step_seconds(compiled, make_args, repeats: int) -> float:
    """The median step time of `compiled` on freshly made arguments, which are freed on return."""
    args = make_args()
    return common.median_time(lambda: compiled(*args)[3], repeats)


def measure(config: dict, repeats: int, peak_before: int | None) -> dict:
    """Runs one compiled configuration: step time, rates, MFU, paper hours and the device's peak
    bytes.

    The allocator's peak is a process-lifetime maximum. Configurations run in increasing order
    of XLA's peak estimate with every argument freed after its run, so a configuration that
    raises the peak sets it: its `device_peak_bytes` is exact. One that does not is at most the
    earlier peak (`device_peak_bytes_at_most`).
    """
    row = dict(config["row"])
    # its arguments are freed by now
    seconds = _step_seconds(config["compiled"], config["make_args"], repeats)
    flops = row["flops_per_step"]
    row.update(
        step_s=seconds,
        steps_per_s=1 / seconds,
        samples_per_s=row["batch"] / seconds,
        achieved_flops_per_s=flops / seconds if flops else None,
    )
    peak = common.peak_flops(row["dtype"])
    if jax.default_backend() != "cpu" and flops and peak:
        row["peak_flops"] = peak
        row["mfu"] = flops / seconds / peak
    if jax.default_backend() != "cpu" and row["batch"] == 128 and row["variant"] == "base":
        row["paper_run_hours"] = PAPER_STEPS * seconds / 3600
    device_peak = common.device_peak_bytes()
    if device_peak is not None:
        exact = peak_before is None or device_peak > peak_before
        row["device_peak_bytes" if exact else "device_peak_bytes_at_most"] = device_peak
    return row


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    on_cpu = jax.default_backend() == "cpu"
    parser.add_argument("--variant", default="base")
    parser.add_argument("--batches", default="32" if on_cpu else "128")
    parser.add_argument("--dtypes", default="float32" if on_cpu else "float32,bfloat16")
    parser.add_argument("--modes", default="cached,online", help="cached, online or both")
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--clip", default="base", choices=("base", "tiny"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--remat", action="store_true", help="config.model.remat: recompute blocks in backward"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if not set(modes) <= {"cached", "online"}:
        parser.error(f"--modes takes cached and/or online, got {args.modes!r}")
    configs = [
        (b, dtype, mode)
        for b in common.int_list(args.batches)
        for dtype in args.dtypes.split(",")
        for mode in modes
    ]
    compiled = []
    for b, dtype, mode in configs:  # compiled from shapes first: nothing allocated yet
        compiled.append(
            compile_config(
                args.variant, b, args.points, dtype, mode == "online", args.clip, args.remat
            )
        )
    # smallest first: each peak is exact when it rises
    compiled.sort(key=lambda c: c["row"]["xla_peak_bytes"] or 0)
    rows, peak = [], common.device_peak_bytes()
    for config in compiled:
        rows.append(measure(config, args.repeats, peak))
        peak = common.device_peak_bytes()
        common.emit(rows[-1], args.json)
        config.clear()  # the executable and its closures go too
    info = common.machine()
    if args.json:
        common.summary({"machine": info, "paper_steps": PAPER_STEPS, "results": rows})
        return 0
    print(f"{args.variant} model train step on {info}")
    for r in rows:
        extra = "".join(
            [
                f", compiled in {r['compile_s']:.1f} s",
                f", MFU {r['mfu']:.1%}" if r.get("mfu") else "",
                f", device peak {r['device_peak_bytes'] / 2**30:.2f} GiB"
                if r.get("device_peak_bytes")
                else "",
                f", paper run {r['paper_run_hours']:.1f} h" if r.get("paper_run_hours") else "",
            ]
        )
        gflops = (
            f"{r['achieved_flops_per_s'] / 1e9:.0f} GFLOP/s" if r["achieved_flops_per_s"] else "n/a"
        )
        peak = f"{r['xla_peak_bytes'] / 2**30:.2f} GiB" if r["xla_peak_bytes"] else "n/a"
        print(
            f"  {r['mode']:6s} {r['dtype']:8s} batch {r['batch']:3d}: {r['step_s']:.3f} s/step, "
            f"{r['samples_per_s']:.1f} samples/s, {gflops}, peak memory (XLA estimate) "
            f"{peak}{extra}"
        )
    return 0


if __name__ == "__main__":
    common.run(main)
