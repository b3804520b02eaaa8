"""One program for every platform: the programs ddjax runs (the train step, zero-shot inference,
one PGD step), traced once and lowered with `jax.export` for cpu, cuda and tpu from any machine,
and the custom calls each platform's program holds (Triton kernels on cuda, Mosaic kernels on tpu,
none on cpu).

Lowering compiles nothing: it checks that every operation has a lowering for the platform, and it
writes what a GPU or TPU would compile (the StableHLO). The kernels inside are chosen per platform
inside the program (`kernels.backend.dispatch`), so a program lowered for several platforms at once
carries each one's kernel.

  exported = lower(*zeroshot_program(config, batch=64, points=1024), platforms=PLATFORMS)
  custom_calls(exported)   # the custom-call targets in its StableHLO
"""

from __future__ import annotations

import contextlib
import functools
import re

import jax
import jax.numpy as jnp
from jax import export

from ddjax import attacks, errors, optim, robustness, scoring, train
from ddjax.models import dual_denoising as dd
from ddjax.models import registry
from ddjax.teachers import cache

PLATFORMS = ("cpu", "cuda", "tpu")
TRITON = "__gpu$xla.gpu.triton"  # a Pallas kernel lowered for CUDA
MOSAIC = "tpu_custom_call"  # a Pallas kernel lowered for TPU
CUSTOM_CALL = re.compile(r'custom_call @"?([^"(\s]+)"?\(')


class LoweringError(errors.UserError):
    what = "cannot lower the program"
    todo = "report it on ddjax's issue tracker with the line above"


def gpu_target():
    """The GPU the Triton lowering asks about on a machine without one (from jax 0.11 it reads the
    compute capability): an abstract H200 (Hopper, sm_90), the chip the device check runs on."""
    device = jax.sharding.AbstractDevice(device_kind="NVIDIA H200", num_cores=132, platform="gpu")
    # Auto axes: the mesh only names the target; Explicit ones would turn on sharding-in-types
    mesh = jax.sharding.AbstractMesh(
        (1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), abstract_device=device
    )
    return jax.sharding.use_abstract_mesh(mesh)


def lower(fn, args: tuple, *, platforms=PLATFORMS, name: str = "program") -> export.Exported:
    """`fn` traced on `args` (shapes or arrays) and lowered for `platforms` in one StableHLO module;
    LoweringError naming the operation (and the platform) that has no lowering. Triton custom
    calls are allowed: their serialised form is tied to the jaxlib that wrote it (export's
    warning)."""
    checks = [export.DisabledSafetyCheck.custom_call(TRITON)]
    context = (
        gpu_target() if any(p in ("cuda", "rocm") for p in platforms) else contextlib.nullcontext()
    )
    try:
        with context:
            return export.export(jax.jit(fn), platforms=platforms, disabled_checks=checks)(*args)
    except (NotImplementedError, ValueError, TypeError) as e:
        raise LoweringError(f"{name} for {', '.join(platforms)}", errors.one_line(e)) from None


def custom_calls(exported: export.Exported) -> list[str]:
    """The custom-call targets of the lowered module, sorted, each once."""
    return sorted(set(CUSTOM_CALL.findall(exported.mlir_module())))


def _shapes(tree):
    return jax.tree_util.tree_map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def _key():
    return jax.eval_shape(lambda: jax.random.key(0))


def optimizer():
    """(AdamW, its schedule) as the paper's run sets them (ReCon's, 409 steps an epoch)."""
    schedule = optim.epoch_schedule(base_lr=5e-4, warmup_epochs=10, epochs=300, steps_per_epoch=409)
    return optim.adamw(schedule, weight_decay=0.05), schedule


def train_program(model_config, *, batch: int, points: int, classes: int = 55):
    """(fn, argument shapes) of the trainer's step (`train.train_step`: cached teacher targets,
    loss, gradient, AdamW, with `optimizer()`) on a batch of `batch` clouds of `points` points:
    (state, batch, (None, text bank, image bank), key) -> (state, metrics)."""
    tx, schedule = optimizer()
    state = jax.eval_shape(
        lambda k: train.create_train_state(model_config, tx, k), jax.random.key(0)
    )
    d = model_config.teacher_dim
    index = jax.ShapeDtypeStruct((batch,), jnp.int32)
    data = {
        "points": jax.ShapeDtypeStruct((batch, points, 3), jnp.float32),
        **{k: index for k in ("record", "view", "label", "prompt")},
    }
    banks = (
        None,
        jax.ShapeDtypeStruct((classes, cache.NUM_PREFIXES, 3, d), jnp.float32),  # text bank
        jax.ShapeDtypeStruct((batch, 1, d), jnp.float32),  # image bank: a record per cloud
    )
    fn = functools.partial(
        train.train_step, loss_fn=dd.make_train_loss(model_config), tx=tx, schedule=schedule
    )
    return fn, (state, data, banks, _key())


def _variables(model_config):
    return jax.eval_shape(lambda k: registry.init_variables(model_config, k), jax.random.key(0))


def zeroshot_program(
    model_config,
    *,
    batch: int,
    points: int,
    num_paths: int,
    t: int,
    classes: int = 40,
    ratio: float = 0.25,
):
    """(fn, argument shapes) of the zero-shot job's scored forward: (variables, points f32[B, P, 3],
    key, class text features f32[C, D]) -> (logits f32[B, C], status i32[B])."""
    inference = registry.inference(model_config)

    def fn(variables, cloud, key, text):
        feats = inference.infer(variables, cloud, key, t=t, num_paths=num_paths)
        return scoring.point_logits(feats, ratio, text, inference.feature_types)

    args = (
        _variables(model_config),
        jax.ShapeDtypeStruct((batch, points, 3), jnp.float32),
        _key(),
        jax.ShapeDtypeStruct((classes, model_config.teacher_dim), jnp.float32),
    )
    return fn, args


def pgd_program(
    model_config,
    *,
    batch: int,
    points: int,
    num_paths: int,
    t: int,
    eps: float = 0.01,
    classes: int = 40,
    ratio: float = 0.25,
):
    """(fn, argument shapes) of one targeted PGD step in the 'paper' mode (`attacks.pgd_step` on
    the attack job's logits, `robustness.build_logits`): (variables, class text features, points,
    target, key) -> the next iterate f32[B, P, 3]."""

    def fn(variables, text, cloud, target, key):
        logits_fn = robustness.build_logits(model_config, variables, text, ratio, num_paths, t)
        step = attacks.pgd_step(
            logits_fn,
            cloud,
            target,
            key,
            eps=eps,
            step_size=eps / 10,
            mode="paper",
            eot_samples=1,
            draws_per_step=None,
            keep_iterates=False,
        )
        return step(0, (cloud, None, None))[0]

    return fn, _attack_args(model_config, batch, points, classes)


def attack_gradient_program(
    model_config,
    *,
    batch: int,
    points: int,
    num_paths: int,
    t: int,
    classes: int = 40,
    ratio: float = 0.25,
):
    """(fn, argument shapes) of the gradient a PGD step takes the sign of ('paper' mode: one draw,
    `attacks.gradient` of the targeted cross-entropy): (variables, class text features, points,
    target, key) -> f32[B, P, 3]."""

    def fn(variables, text, cloud, target, key):
        logits_fn = robustness.build_logits(model_config, variables, text, ratio, num_paths, t)
        loss_fn = lambda x, k: (attacks.targeted_cross_entropy(logits_fn(x, k), target), None)
        return attacks.gradient(loss_fn, cloud, key, mode="paper")[0]

    return fn, _attack_args(model_config, batch, points, classes)


def _attack_args(model_config, batch: int, points: int, classes: int) -> tuple:
    """The shapes of (variables, class text features, points, target, key)."""
    return (
        _variables(model_config),
        jax.ShapeDtypeStruct((classes, model_config.teacher_dim), jnp.float32),
        jax.ShapeDtypeStruct((batch, points, 3), jnp.float32),
        jax.ShapeDtypeStruct((batch,), jnp.int32),
        _key(),
    )
