"""k-nearest neighbours: a pure-jnp reference, a Pallas kernel and the public `knn`.

Semantics, identical in every implementation: for each query, the indices of the k points with the
smallest squared Euclidean distance, computed as dx*dx + dy*dy + dz*dz in float32 (not ReCon's |a|^2
+ |b|^2 - 2ab, which loses the exact zero of a point to itself), ordered nearest first, ties to the
lower index. In other words the k smallest (distance, index) pairs in lexicographic order.

The indices are integers and are not differentiated: every implementation stops gradients at its
inputs.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl

from kernels import backend, validation

# The 'xla' path switches from one flat top-k to the two-stage search at this many points.
_HIERARCHICAL_MIN_POINTS = 4096
_HIERARCHICAL_BLOCK = 16


def _squared_distances(queries: jax.Array, points: jax.Array) -> jax.Array:
    """queries (..., M, 3), points (..., N, 3) -> (..., M, N), coordinate by coordinate."""
    d = None
    for c in range(3):
        diff = queries[..., :, None, c] - points[..., None, :, c]  # (..., M, N)
        d = diff * diff if d is None else d + diff * diff
    return d


def knn_reference(queries: jax.Array, points: jax.Array, k: int) -> jax.Array:
    """Pure-jnp kNN: the full distance matrix and `lax.top_k` (lower index first on ties).

    queries f32[B, M, 3], points f32[B, N, 3] -> int32[B, M, k].
    """
    d = _squared_distances(queries.astype(jnp.float32), points.astype(jnp.float32))  # (B, M, N)
    return lax.top_k(-d, k)[1]


def knn_blocked(
    queries: jax.Array, points: jax.Array, k: int, *, block: int = _HIERARCHICAL_BLOCK
) -> jax.Array:
    """Exact two-stage kNN for large N: pick blocks by their nearest point, then search only those.

    The points are cut into contiguous blocks of `block`. The k nearest points lie in at most k
    blocks, and those are exactly the k blocks whose own nearest (distance, index) pair is smallest:
    a block holding one of the k nearest pairs has a key no larger than the k-th pair, and at most k
    blocks can. So stage one takes the top-k blocks by their minimum distance (ties to the lower
    block, i.e. the lower index), and stage two takes the top-k of the k*block candidates, gathered
    in increasing index order so that ties still go to the lower point index. The result equals
    `knn_reference` exactly, with two top-k calls on rows of N/block and k*block instead of one on
    rows of N.
    """
    b, m, _ = queries.shape
    n = points.shape[1]
    queries, points = queries.astype(jnp.float32), points.astype(jnp.float32)
    num_blocks = -(-n // block)
    # Padding points at +inf are at distance +inf: never among the k (k <= N real points).
    padded = jnp.pad(points, ((0, 0), (0, num_blocks * block - n), (0, 0)), constant_values=jnp.inf)
    blocks = padded.reshape(b, num_blocks, block, 3)  # (B, NB, block, 3)
    d = None
    for c in range(3):
        diff = queries[:, :, None, None, c] - blocks[:, None, :, :, c]  # (B, M, NB, block)
        d = diff * diff if d is None else d + diff * diff
    block_min = jnp.min(d, axis=-1)  # (B, M, NB)
    kb = min(k, num_blocks)
    chosen = jnp.sort(lax.top_k(-block_min, kb)[1], axis=-1)  # (B, M, kb) block ids, ascending
    cand = jax.vmap(lambda blk, ids: blk[ids])(blocks, chosen)  # (B, M, kb, block, 3)
    cand = cand.reshape(b, m, kb * block, 3)  # (B, M, C): candidates in increasing point index
    dc = None
    for c in range(3):
        diff = queries[:, :, None, c] - cand[..., c]  # (B, M, C)
        dc = diff * diff if dc is None else dc + diff * diff
    pos = lax.top_k(-dc, k)[1]  # (B, M, k) positions among the candidates
    return jnp.take_along_axis(chosen, pos // block, axis=-1) * block + pos % block


def _knn_kernel(
    qx_ref, qy_ref, qz_ref, px_ref, py_ref, pz_ref, idx_ref, *, n: int, k: int, block_n: int
):
    """One program per (cloud, block of queries).

    q*_ref: (BM, 1) f32 query coordinates; p*_ref: (1, N_pad) f32 point coordinates; idx_ref: (BM,
    K_pad). Selection by lexicographic successor: round j finds, over all points, the smallest
    (distance, index) pair strictly greater than round j-1's. Only two scalars per query persist
    between rounds, so the kernel needs no sorting network and no scratch memory, and ties resolve
    to the lower index by construction. Distances are recomputed each round, chunk by chunk (k * N /
    BLOCK_N chunk visits).
    """
    qx, qy, qz = qx_ref[...], qy_ref[...], qz_ref[...]  # (BM, 1)
    bm, k_pad = idx_ref.shape
    n_pad = px_ref.shape[1]
    num_chunks = n_pad // block_n
    chunk_iota = lax.broadcasted_iota(jnp.int32, (1, block_n), 1)
    k_iota = lax.broadcasted_iota(jnp.int32, (bm, k_pad), 1)
    big = jnp.int32(n_pad)

    def round_(j, carry):
        prev_d, prev_i, idx = carry  # (BM, 1), (BM, 1), (BM, K_pad)

        def chunk(c, best):
            best_d, best_i = best
            start = pl.multiple_of(c * block_n, block_n)
            px = px_ref[:, pl.ds(start, block_n)]  # (1, BLOCK_N)
            py = py_ref[:, pl.ds(start, block_n)]
            pz = pz_ref[:, pl.ds(start, block_n)]
            # (BM, BLOCK_N)
            d = (qx - px) * (qx - px) + (qy - py) * (qy - py) + (qz - pz) * (qz - pz)
            i = chunk_iota + start  # (1, BLOCK_N)
            after_prev = (d > prev_d) | ((d == prev_d) & (i > prev_i))
            ok = after_prev & (i < n)
            d = jnp.where(ok, d, jnp.inf)
            cmin = jnp.min(d, axis=1, keepdims=True)  # (BM, 1)
            ci = jnp.min(jnp.where(ok & (d == cmin), i, big), axis=1, keepdims=True)
            # Chunks come in increasing index order, so an equal distance never beats the incumbent.
            better = ci < big
            better = better & ((cmin < best_d) | (best_i == big))
            return jnp.where(better, cmin, best_d), jnp.where(better, ci, best_i)

        init = (jnp.full((bm, 1), jnp.inf, jnp.float32), jnp.full((bm, 1), big, jnp.int32))
        best_d, best_i = lax.fori_loop(0, num_chunks, chunk, init)
        idx = jnp.where(k_iota == j, best_i, idx)
        return best_d, best_i, idx

    init = (
        jnp.full((bm, 1), -jnp.inf, jnp.float32),
        jnp.full((bm, 1), -1, jnp.int32),
        jnp.zeros((bm, k_pad), jnp.int32),
    )
    idx_ref[...] = lax.fori_loop(0, k, round_, init)[2]


def knn_pallas(
    queries: jax.Array,
    points: jax.Array,
    k: int,
    *,
    interpret: bool = False,
    block_m: int = 16,
    block_n: int = 128,
) -> jax.Array:
    """kNN as a Pallas kernel. queries f32[B, M, 3], points f32[B, N, 3] -> int32[B, M, k].

    Grid (B, M_pad / block_m); each program keeps its queries in registers and streams the cloud in
    chunks of `block_n`. Sizes are padded to powers of two / multiples of the blocks and sliced
    back.
    """
    b, m, _ = queries.shape
    n = points.shape[1]
    block_m = min(block_m, backend.next_power_of_2(m))
    block_n = min(block_n, backend.next_power_of_2(n))
    m_pad = -(-m // block_m) * block_m
    n_pad = -(-n // block_n) * block_n
    k_pad = backend.next_power_of_2(k)
    q = jnp.pad(queries.astype(jnp.float32), ((0, 0), (0, m_pad - m), (0, 0)))  # (B, M_pad, 3)
    p = jnp.pad(points.astype(jnp.float32), ((0, 0), (0, n_pad - n), (0, 0)))  # (B, N_pad, 3)
    q_cols = [q[..., c : c + 1] for c in range(3)]  # each (B, M_pad, 1)
    p_rows = [p[:, None, :, c] for c in range(3)]  # each (B, 1, N_pad)
    q_spec = pl.BlockSpec((None, block_m, 1), lambda i, j: (i, j, 0))
    p_spec = pl.BlockSpec((None, 1, n_pad), lambda i, j: (i, 0, 0))
    kernel = functools.partial(_knn_kernel, n=n, k=k, block_n=block_n)
    idx = pl.pallas_call(
        kernel,
        grid=(b, m_pad // block_m),
        in_specs=[q_spec] * 3 + [p_spec] * 3,
        out_specs=pl.BlockSpec((None, block_m, k_pad), lambda i, j: (i, j, 0)),
        out_shape=jax.ShapeDtypeStruct((b, m_pad, k_pad), jnp.int32),
        interpret=interpret,
        compiler_params=None if interpret else backend.triton_compiler_params(num_warps=4),
        name="knn",
    )(*q_cols, *p_rows)
    return idx[:, :m, :k]  # (B, M, k)


def knn_xla(queries: jax.Array, points: jax.Array, k: int) -> jax.Array:
    """The 'xla' implementation: `knn_reference` below 4096 points, `knn_blocked` from there."""
    if points.shape[1] >= _HIERARCHICAL_MIN_POINTS:
        return knn_blocked(queries, points, k)
    return knn_reference(queries, points, k)


KERNELS = {  # implementation -> fn(queries, points, k=k)
    "xla": knn_xla,
    "pallas": knn_pallas,
    "pallas_interpret": functools.partial(knn_pallas, interpret=True),
}


def knn(
    queries: jax.Array,
    points: jax.Array,
    k: int,
    *,
    implementation: str | None = None,
    check_finite: bool = False,
) -> jax.Array:
    """Indices of the k nearest points of each query, nearest first, ties to the lower index.

    Args:
      queries: f32[B, M, 3].
      points: f32[B, N, 3], the same B.
      k: 1 <= k <= N (a static Python int).
      implementation: None (the backend's default, see `kernels/backend.py`), 'xla' (the reference
      for
        N < 4096, the exact two-stage `knn_blocked` from 4096 points on), 'pallas' (GPU) or
        'pallas_interpret'.
      check_finite: raise ValueError on NaN/inf coordinates (a `checkify` check under `jax.jit`).

    Returns:
      int32[B, M, k]. Works under `jit` and `vmap`.
    """
    validation.check_cloud("knn", "queries", queries)
    validation.check_cloud("knn", "points", points)
    bq, _, _ = jnp.shape(queries)
    bp, n, _ = jnp.shape(points)
    if bq != bp:
        raise ValueError(
            f"knn: `queries` and `points` must have the same batch size, got shapes "
            f"{tuple(jnp.shape(queries))} and {tuple(jnp.shape(points))}"
        )
    k = validation.check_size("knn", "k", k, upper=n, upper_name="N")
    impl = backend.resolve("knn", implementation)
    if check_finite:
        validation.check_finite("knn", "queries", queries)
        validation.check_finite("knn", "points", points)
    queries = lax.stop_gradient(jnp.asarray(queries))
    points = lax.stop_gradient(jnp.asarray(points))
    if implementation is None:  # each platform's default, chosen inside the program
        return backend.dispatch("knn", KERNELS, queries, points, k=k)
    return KERNELS[impl](queries, points, k=k)
