"""Losses of Dual Denoising (spec sections 2.5, 2.6 and 6.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def chamfer_l2_sides(pred: jax.Array, target: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Squared nearest-neighbour distances of both sides, per point.

    pred f32[..., P, 3], target f32[..., Q, 3] -> (d1 f32[..., P]: each predicted point to its
    nearest target point; d2 f32[..., Q]: each target point to its nearest predicted point).
    Squared, no sqrt.
    """
    diff = pred[..., :, None, :] - target[..., None, :, :]  # (..., P, Q, 3)
    d = jnp.sum(diff * diff, axis=-1)  # (..., P, Q)
    return jnp.min(d, axis=-1), jnp.min(d, axis=-2)


def chamfer_l2(pred: jax.Array, target: jax.Array) -> jax.Array:
    """ReCon's Chamfer-L2 over a set of groups: mean(d1) + mean(d2), each mean over all points of
    all groups.

    pred f32[..., P, 3], target f32[..., Q, 3] -> scalar. Squared distances, no sqrt, no 1/2.
    """
    d1, d2 = chamfer_l2_sides(pred, target)
    return jnp.mean(d1) + jnp.mean(d2)


def chamfer_l2_per_sample(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Chamfer-L2 of each sample over its groups: pred f32[B, G, P, 3], target f32[B, G, Q, 3] ->
    f32[B].

    The batch mean of this equals `chamfer_l2` over the whole batch (every sample has the same
    counts).
    """
    d1, d2 = chamfer_l2_sides(pred, target)  # (B, G, P), (B, G, Q)
    return jnp.mean(d1, axis=(1, 2)) + jnp.mean(d2, axis=(1, 2))


def smooth_l1(pred: jax.Array, target: jax.Array, beta: float = 1.0) -> jax.Array:
    """PyTorch's SmoothL1Loss (mean over all elements): 0.5 d^2 / beta if |d| < beta else |d| - 0.5
    beta."""
    d = jnp.abs(pred - target)
    return jnp.mean(jnp.where(d < beta, 0.5 * d * d / beta, d - 0.5 * beta))
