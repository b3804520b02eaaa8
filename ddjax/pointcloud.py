"""Point-cloud tokenization: FPS centers and kNN neighbourhoods (spec sections 1.1 and 6.2).

`group` is ReCon's `Group`: G centers by farthest point sampling, the K nearest cloud points of each
center, each neighbourhood centred on its center (no scaling). `group_noisy` is the Dual Denoising
variant (spec trap 16): FPS runs on the clean cloud, the noisy centers are the noisy points at those
same indices, the noisy tokens are kNN neighbourhoods in the noisy cloud, and the clean target
tokens are kNN neighbourhoods of the clean centers in the clean cloud.

Indices come from `kernels` and are never differentiated; all gathers are plain jnp indexing, so
gradients with respect to the input coordinates flow through the gathered values (spec D4), as
attacks require.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from kernels import fps, knn, validation


class Groups(NamedTuple):
    neighborhoods: jax.Array  # f32[B, G, K, 3], each group minus its center
    centers: jax.Array  # f32[B, G, 3], absolute coordinates


class NoisyGroups(NamedTuple):
    noisy: Groups  # kNN of the noisy centers in the noisy cloud: the model's input tokens
    clean: Groups  # kNN of the clean centers in the clean cloud: the reconstruction targets


def gather_points(points: jax.Array, idx: jax.Array) -> jax.Array:
    """points f32[B, N, C], idx int[B, ...] -> f32[B, ..., C] (differentiable in `points`)."""
    b, _, c = points.shape
    flat = idx.reshape(b, -1)  # (B, P)
    out = jnp.take_along_axis(points, flat[..., None], axis=1)  # (B, P, C)
    return out.reshape(*idx.shape, c)  # (B, ..., C)


def _neighborhoods(
    cloud: jax.Array, centers: jax.Array, group_size: int, knn_implementation, check_finite: bool
) -> jax.Array:
    """kNN groups of `centers` in `cloud`, minus their center: f32[B, G, K, 3]."""
    nbr = knn(
        centers, cloud, group_size, implementation=knn_implementation, check_finite=check_finite
    )  # (B, G, K)
    return gather_points(cloud, nbr) - centers[:, :, None, :]  # (B, G, K, 3)


def group_indexed(
    points: jax.Array, num_groups: int, group_size: int
) -> tuple[Groups, jax.Array, jax.Array]:
    """ReCon's and Point-BERT's `Group`, with its indices: (Groups, fps_idx int[B, G], knn_idx
    int[B, G, K]). FPS starts at point 0; kNN of each center in the same cloud (the center itself
    included). points f32[B, N, C]: FPS and kNN read xyz (the first 3 channels); a neighbourhood is
    its points' xyz minus the center, then their other channels as they are (ULIP-2's and Uni3D's
    coloured `Group`: relative xyz, absolute rgb), so neighborhoods are f32[B, G, K, C]."""
    xyz = points[..., :3]  # (B, N, 3)
    idx = fps(xyz, num_groups)  # (B, G)
    centers = gather_points(xyz, idx)  # (B, G, 3)
    nbr = knn(centers, xyz, group_size)  # (B, G, K)
    gathered = gather_points(points, nbr)  # (B, G, K, C)
    relative = gathered[..., :3] - centers[:, :, None, :]  # (B, G, K, 3)
    neighborhoods = jnp.concatenate([relative, gathered[..., 3:]], axis=-1)  # (B, G, K, C)
    return Groups(neighborhoods, centers), idx, nbr


def group(
    points: jax.Array,
    num_groups: int,
    group_size: int,
    *,
    fps_implementation: str | None = None,
    knn_implementation: str | None = None,
    check_finite: bool = False,
) -> Groups:
    """ReCon's grouping. points f32[B, N, 3] -> Groups(neighborhoods [B, G, K, 3], centers [B, G,
    3])."""
    # (B, G)
    idx = fps(points, num_groups, implementation=fps_implementation, check_finite=check_finite)
    centers = gather_points(points, idx)  # (B, G, 3)
    return Groups(_neighborhoods(points, centers, group_size, knn_implementation, False), centers)


def group_noisy(
    clean: jax.Array,
    noisy: jax.Array,
    num_groups: int,
    group_size: int,
    *,
    fps_implementation: str | None = None,
    knn_implementation: str | None = None,
    check_finite: bool = False,
) -> NoisyGroups:
    """Dual Denoising grouping: FPS indices from `clean`, shared by both clouds.

    clean, noisy: f32[B, N, 3] with the same point order (noisy = clean + sigma_t * eps).
    """
    if jnp.shape(clean) != jnp.shape(noisy):
        raise ValueError(
            f"group_noisy: `clean` and `noisy` must have the same shape, got "
            f"{tuple(jnp.shape(clean))} and {tuple(jnp.shape(noisy))}"
        )
    if check_finite:
        validation.check_finite("group_noisy", "clean", clean)
        validation.check_finite("group_noisy", "noisy", noisy)
    idx = fps(clean, num_groups, implementation=fps_implementation)  # (B, G)
    clean_centers = gather_points(clean, idx)  # (B, G, 3)
    noisy_centers = gather_points(noisy, idx)  # (B, G, 3), same indices
    return NoisyGroups(
        noisy=Groups(
            _neighborhoods(noisy, noisy_centers, group_size, knn_implementation, False),
            noisy_centers,
        ),
        clean=Groups(
            _neighborhoods(clean, clean_centers, group_size, knn_implementation, False),
            clean_centers,
        ),
    )


def noise_sigma(t: jax.Array, *, noise_scale: float, num_timesteps: int) -> jax.Array:
    """The linear schedule sigma_t = s * t / (T - 1): 0 at t = 0, s at t = T - 1 (spec
    section 6.1)."""
    return noise_scale * jnp.asarray(t, jnp.float32) / (num_timesteps - 1)


def loss_weight(sigma: jax.Array) -> jax.Array:
    """lambda_t = 1 / (1 + sigma_t^2): in [0.9936, 1] for s = 0.08 (spec trap 17: sigma squared, not
    t)."""
    return 1.0 / (1.0 + sigma * sigma)


def add_noise(points: jax.Array, sigma: jax.Array, key: jax.Array) -> jax.Array:
    """z_t = z_0 + sigma_t * eps on the xyz coordinates. points f32[B, N, 3], sigma f32[B] or
    scalar."""
    eps = jax.random.normal(key, points.shape, points.dtype)
    return points + jnp.reshape(sigma, jnp.shape(sigma) + (1, 1)) * eps
