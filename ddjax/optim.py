"""The optimiser: AdamW with ReCon's no-decay groups and its per-epoch cosine schedule (spec section
3.3)."""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import optax


def recon_lr(
    epoch: float,
    *,
    base_lr: float,
    warmup_epochs: int,
    epochs: int,
    warmup_lr: float = 1e-6,
    min_lr: float = 1e-6,
) -> float:
    """timm 0.4.5 CosineLRScheduler's value at epoch index e (t_initial = epochs, no warmup prefix):
    linear warm-up from warmup_lr for e < warmup_epochs, then cosine on the raw epoch index, min_lr
    after."""
    if epoch < warmup_epochs:
        return warmup_lr + epoch * (base_lr - warmup_lr) / warmup_epochs
    if epoch < epochs:
        return min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * epoch / epochs))
    return min_lr


def epoch_schedule(
    *,
    base_lr: float,
    warmup_epochs: int,
    epochs: int,
    steps_per_epoch: int,
    warmup_lr: float = 1e-6,
    min_lr: float = 1e-6,
) -> Callable[[jax.Array], jax.Array]:
    """Learning rate per step, constant within an epoch. ReCon steps the scheduler at the *end* of
    epoch e, so epochs 0 and 1 both run at warmup_lr and epoch e >= 1 runs at recon_lr(e - 1)."""

    def schedule(step):
        epoch = jnp.maximum(step // steps_per_epoch - 1, 0).astype(jnp.float32)
        warm = warmup_lr + epoch * (base_lr - warmup_lr) / warmup_epochs
        cosine = min_lr + 0.5 * (base_lr - min_lr) * (1 + jnp.cos(jnp.pi * epoch / epochs))
        return jnp.where(epoch < warmup_epochs, warm, jnp.where(epoch < epochs, cosine, min_lr))

    return schedule


def decay_mask(params) -> dict:
    """True where weight decay applies: not 1-D parameters (biases, norms), not names containing
    'token'; the 3-D per-type position tensors *are* decayed, as ReCon's *_pos (spec trap 14). A
    scanned stack's parameters (under a `blocks` node: `blocks.scanned`) count the dimensions of one
    layer, without the leading layer axis: a stacked bias f32[depth, C] is a bias."""

    def decays(path, x):
        names = [str(getattr(k, "key", k)) for k in path]
        layer_ndim = x.ndim - (1 if "blocks" in names else 0)
        return layer_ndim > 1 and "token" not in "/".join(names)

    return jax.tree_util.tree_map_with_path(decays, params)


def adamw(schedule, *, weight_decay: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
    """PyTorch-equivalent AdamW (decoupled decay lr * wd * param) with ReCon's no-decay groups."""
    return optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay, mask=decay_mask)
