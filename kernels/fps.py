"""Farthest point sampling (FPS): a pure-jnp reference, a Pallas kernel and the public `fps`.

Semantics (spec decision D3), identical in every implementation:
  * the first sample is always index 0;
  * distances are squared Euclidean, computed as dx*dx + dy*dy + dz*dz in float32;
  * each point keeps the running minimum of its distance to the samples so far, initialised to 1e10;
  * the next sample is the first argmax (lowest index on ties) of that running minimum.
This equals `fpsample.fps_sampling(pc, n, start_idx=0)` index for index. Unlike pointnet2_ops
(ReCon's CUDA FPS) there is no near-origin skip: pointnet2_ops never picks a point with squared norm
<= 1e-3 after the first sample, which matters only for clouds with points at the origin.

The indices are integers and are not differentiated: every implementation stops gradients at its
input.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from kernels import backend, validation

_INIT_DIST = 1e10


def fps_reference(points: jax.Array, num_samples: int) -> jax.Array:
    """Pure-jnp FPS. points f32[B, N, 3] -> int32[B, num_samples]. This is also the 'xla'
    implementation.

    The argmax is written as a max and a min over a masked iota: two reductions that XLA
    vectorises, where `jnp.argmax`'s variadic reduce is about 5x slower on CPU.
    """
    b, n, _ = points.shape
    points = points.astype(jnp.float32)
    x, y, z = points[..., 0], points[..., 1], points[..., 2]  # each (B, N)
    iota = lax.broadcasted_iota(jnp.int32, (b, n), 1)

    def body(s, carry):
        dist, idx, lx, ly, lz = carry  # dist (B, N); idx (B, S); lx, ly, lz (B, 1): the last sample
        d = (x - lx) * (x - lx) + (y - ly) * (y - ly) + (z - lz) * (z - lz)
        dist = jnp.minimum(dist, d)
        best = jnp.max(dist, axis=1, keepdims=True)  # (B, 1)
        # (B, 1) first argmax
        nxt = jnp.min(jnp.where(dist == best, iota, n), axis=1, keepdims=True)
        idx = lax.dynamic_update_slice_in_dim(idx, nxt, s, axis=1)
        take = lambda c: jnp.take_along_axis(c, nxt, axis=1)  # (B, 1)
        return dist, idx, take(x), take(y), take(z)

    dist = jnp.full((b, n), _INIT_DIST, jnp.float32)
    idx = jnp.zeros((b, num_samples), jnp.int32)
    carry = (dist, idx, x[:, :1], y[:, :1], z[:, :1])
    return lax.fori_loop(1, num_samples, body, carry)[1]


def _fps_kernel(x_ref, y_ref, z_ref, idx_ref, *, n: int, num_samples: int):
    """One program per cloud. x/y/z_ref: (1, N_pad) f32; idx_ref: (1, S_pad) int32."""
    x, y, z = x_ref[...], y_ref[...], z_ref[...]
    n_pad, s_pad = x.shape[1], idx_ref.shape[1]
    iota = lax.broadcasted_iota(jnp.int32, (1, n_pad), 1)
    s_iota = lax.broadcasted_iota(jnp.int32, (1, s_pad), 1)
    # Padding points get -1: below every real running minimum (>= 0), so never the argmax.
    dist = jnp.where(iota < n, jnp.float32(_INIT_DIST), jnp.float32(-1.0))

    # v[0, i] as a scalar, by a masked sum (Triton cannot index registers dynamically)
    def pick(v, i):
        return jnp.sum(jnp.where(iota == i, v, 0.0))

    def body(s, carry):
        dist, idx, lx, ly, lz = carry
        d = (x - lx) * (x - lx) + (y - ly) * (y - ly) + (z - lz) * (z - lz)
        dist = jnp.minimum(dist, d)
        best = jnp.max(dist)
        nxt = jnp.min(jnp.where(dist == best, iota, n_pad))
        idx = jnp.where(s_iota == s, nxt, idx)
        return dist, idx, pick(x, nxt), pick(y, nxt), pick(z, nxt)

    idx = jnp.zeros((1, s_pad), jnp.int32)
    carry = (dist, idx, pick(x, 0), pick(y, 0), pick(z, 0))
    idx_ref[...] = lax.fori_loop(1, num_samples, body, carry)[1]


def fps_pallas(points: jax.Array, num_samples: int, *, interpret: bool = False) -> jax.Array:
    """FPS as a Pallas kernel: grid over the batch, the whole cloud in one block.

    points f32[B, N, 3] -> int32[B, num_samples]. N and num_samples are padded to powers of two
    (Triton block shapes); padding is masked out and sliced off.
    """
    b, n, _ = points.shape
    n_pad, s_pad = backend.next_power_of_2(n), backend.next_power_of_2(num_samples)
    coords = jnp.pad(points.astype(jnp.float32), ((0, 0), (0, n_pad - n), (0, 0)))  # (B, N_pad, 3)
    x, y, z = coords[..., 0], coords[..., 1], coords[..., 2]  # each (B, N_pad)
    cloud_spec = pl.BlockSpec((1, n_pad), lambda i: (i, 0))
    kernel = functools.partial(_fps_kernel, n=n, num_samples=num_samples)
    idx = pl.pallas_call(
        kernel,
        grid=(b,),
        in_specs=[cloud_spec, cloud_spec, cloud_spec],
        out_specs=pl.BlockSpec((1, s_pad), lambda i: (i, 0)),
        out_shape=jax.ShapeDtypeStruct((b, s_pad), jnp.int32),
        interpret=interpret,
        compiler_params=None
        if interpret
        else backend.triton_compiler_params(num_warps=min(16, max(4, n_pad // 512))),
        name="fps",
    )(x, y, z)
    return idx[:, :num_samples]  # (B, S)


def fps(
    points: jax.Array,
    num_samples: int,
    *,
    implementation: str | None = None,
    check_finite: bool = False,
) -> jax.Array:
    """Farthest point sampling: indices of `num_samples` points of each cloud.

    Args:
      points: f32[B, N, 3] clouds (any float dtype; computed in float32).
      num_samples: number of samples, 1 <= num_samples <= N (a static Python int).
      implementation: None (the backend's default, see `kernels/backend.py`), 'xla', 'pallas' (GPU)
      or
        'pallas_interpret' (the Pallas kernel in interpret mode; runs anywhere, slowly).
      check_finite: raise ValueError if `points` holds NaN/inf. Immediate on concrete arrays; under
        `jax.jit` it is a `checkify` check (wrap the jitted function with `checkify.checkify`).
        Without it, non-finite coordinates give unspecified indices.

    Returns:
      int32[B, num_samples], starting with index 0. Works under `jit` and `vmap`.
    """
    validation.check_cloud("fps", "points", points)
    _, n, _ = jnp.shape(points)
    num_samples = validation.check_size("fps", "num_samples", num_samples, upper=n, upper_name="N")
    impl = backend.resolve("fps", implementation)
    if check_finite:
        validation.check_finite("fps", "points", points)
    points = lax.stop_gradient(jnp.asarray(points))
    if impl == "xla":
        return fps_reference(points, num_samples)
    return fps_pallas(points, num_samples, interpret=impl == "pallas_interpret")
