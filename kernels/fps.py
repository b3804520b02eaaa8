"""Farthest point sampling (FPS): a pure-jnp reference, a Pallas kernel for GPU (Triton), one for
TPU (Mosaic) and the public `fps`.

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


def _fps_loop(x, y, z, iota, n: int, big, idx_shape, num_samples: int):
    """The FPS loop both Pallas kernels run on one cloud held whole: x/y/z and `iota` (each point's
    index, int32 or float32) of one shape, `n` real points (padding gets a running minimum of -1,
    below every real one >= 0, so never the argmax), `big` an index above every point's. Scalars
    are read by masked sums, exact since one term is not zero: neither Triton nor Mosaic indexes
    registers dynamically. Returns int32 `idx_shape` with the samples in its first positions."""
    s_iota = lax.broadcasted_iota(jnp.int32, idx_shape, len(idx_shape) - 1)
    dist = jnp.where(iota < n, jnp.float32(_INIT_DIST), jnp.float32(-1.0))

    def pick(v, i):  # v at index i, as a scalar
        return jnp.sum(jnp.where(iota == i, v, 0.0))

    def body(s, carry):
        dist, idx, lx, ly, lz = carry
        d = (x - lx) * (x - lx) + (y - ly) * (y - ly) + (z - lz) * (z - lz)
        dist = jnp.minimum(dist, d)
        best = jnp.max(dist)
        nxt = jnp.min(jnp.where(dist == best, iota, big))  # the first argmax
        idx = jnp.where(s_iota == s, nxt.astype(jnp.int32), idx)
        return dist, idx, pick(x, nxt), pick(y, nxt), pick(z, nxt)

    first = jnp.zeros((), iota.dtype)
    carry = (dist, jnp.zeros(idx_shape, jnp.int32), pick(x, first), pick(y, first), pick(z, first))
    return lax.fori_loop(1, num_samples, body, carry)[1]


def _fps_kernel(x_ref, y_ref, z_ref, idx_ref, *, n: int, num_samples: int):
    """One program per cloud. x/y/z_ref: (1, N_pad) f32; idx_ref: (1, S_pad) int32."""
    x, y, z = x_ref[...], y_ref[...], z_ref[...]
    iota = lax.broadcasted_iota(jnp.int32, x.shape, 1)  # (1, N_pad)
    idx_ref[...] = _fps_loop(x, y, z, iota, n, x.shape[1], idx_ref.shape, num_samples)


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


TPU_LANES, TPU_TILE = 128, 8 * 128  # a TPU vector register: 8 sublanes x 128 lanes


def _fps_tpu_kernel(x_ref, y_ref, z_ref, idx_ref, *, n: int, num_samples: int):
    """One program per cloud, everything in VMEM. x/y/z_ref: (R, 128) f32, point r * 128 + c at
    [r, c]; idx_ref: (1, S_pad) int32. Indices are carried as float32 (exact below 2^24) so that
    every reduction is a float max or min, which Mosaic lowers on every TPU generation."""
    x, y, z = x_ref[...], y_ref[...], z_ref[...]
    rows, lanes = x.shape
    iota = (
        lax.broadcasted_iota(jnp.int32, (rows, lanes), 0) * lanes
        + lax.broadcasted_iota(jnp.int32, (rows, lanes), 1)
    ).astype(jnp.float32)  # (R, 128): each point's index
    big = jnp.float32(rows * lanes)
    idx_ref[...] = _fps_loop(x, y, z, iota, n, big, idx_ref.shape, num_samples)


def fps_pallas_tpu(points: jax.Array, num_samples: int, *, interpret: bool = False) -> jax.Array:
    """FPS as a TPU Pallas (Mosaic) kernel: grid over the batch, each cloud's coordinates as (R,
    128) tiles in VMEM and the whole loop in one kernel. `interpret`: Pallas's TPU interpreter,
    which runs the same kernel on any backend.

    points f32[B, N, 3] -> int32[B, num_samples]. N is padded to a multiple of 1024 (whole (8, 128)
    registers) and num_samples to one of 128; padding is masked out and sliced off.
    """
    from jax.experimental.pallas import tpu as pltpu  # noqa: PLC0415 - TPU-only, jaxlib-dependent

    b, n, _ = points.shape
    n_pad = -(-n // TPU_TILE) * TPU_TILE
    s_pad = -(-num_samples // TPU_LANES) * TPU_LANES
    coords = jnp.pad(points.astype(jnp.float32), ((0, 0), (0, n_pad - n), (0, 0)))  # (B, N_pad, 3)
    # (B, R, 128) each: point r * 128 + c at [r, c]
    x, y, z = (coords[..., c].reshape(b, n_pad // TPU_LANES, TPU_LANES) for c in range(3))
    cloud_spec = pl.BlockSpec(
        (pl.Squeezed(), n_pad // TPU_LANES, TPU_LANES),
        lambda i: (i, 0, 0),
        memory_space=pltpu.VMEM,
    )
    kernel = functools.partial(_fps_tpu_kernel, n=n, num_samples=num_samples)
    idx = pl.pallas_call(
        kernel,
        grid=(b,),
        in_specs=[cloud_spec, cloud_spec, cloud_spec],
        out_specs=pl.BlockSpec(
            (pl.Squeezed(), 1, s_pad), lambda i: (i, 0, 0), memory_space=pltpu.VMEM
        ),
        out_shape=jax.ShapeDtypeStruct((b, 1, s_pad), jnp.int32),
        interpret=pltpu.InterpretParams() if interpret else False,
        compiler_params=pltpu.CompilerParams(dimension_semantics=("parallel",)),
        name="fps_tpu",
    )(x, y, z)
    return idx[:, 0, :num_samples]  # (B, S)


KERNELS = {  # implementation -> fn(points, num_samples=S)
    "xla": fps_reference,
    "pallas": fps_pallas,
    "pallas_interpret": functools.partial(fps_pallas, interpret=True),
    "pallas_tpu": fps_pallas_tpu,
    "pallas_tpu_interpret": functools.partial(fps_pallas_tpu, interpret=True),
}


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
      implementation: None (each platform's default, chosen inside the program: see
        `kernels/backend.py`), 'xla', 'pallas' (the platform's kernel: Triton on GPU, Mosaic on
        TPU), 'pallas_interpret' (the GPU kernel in Pallas's interpreter; runs anywhere, slowly),
        'pallas_tpu' or 'pallas_tpu_interpret' (the TPU kernel, in Pallas's TPU interpreter).
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
    if implementation is None:  # each platform's default, chosen inside the program
        return backend.dispatch("fps", KERNELS, points, num_samples=num_samples)
    return KERNELS[impl](points, num_samples=num_samples)
