"""Every FPS/kNN implementation of this backend, index for index against numpy, at the sizes the
model runs.

The clouds are shape-like (ellipsoid surfaces, `ddjax.demo.procedural_clouds`) snapped to a 1/256
grid: every squared distance is then a multiple of 2^-16 below 2^4, exact in float32 whatever the
evaluation order (fused multiply-adds included), so equal distances are true ties and the float64
numpy brute force is exact as well. Indices must be equal, not close: this is the check that the
Pallas kernels and the jnp references agree on real hardware.

Sizes come from DDJAX_KERNEL_SIZES ("BxN,BxN"; N = 1024 takes 64 centers, N = 8192 takes 512, k =
32). The default is one small size so that CPU CI stays quick; `make device-check` sets the
pretraining and zero-shot sizes with B in {32, 128}. Pallas interpret mode, a slow correctness tool,
runs at the smallest size only.
"""

import functools
import os

import jax
import numpy as np
import pytest

from ddjax.data.synthetic import procedural_clouds
from kernels import fps, knn, knn_reference
from tests import references as ref
from tests.kernel_cases import IMPLEMENTATIONS

GRID = 256  # coordinates m / 256 with |m| <= 256


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for item in text.split(","):
        b, n = item.lower().split("x")
        sizes.append((int(b), int(n)))
    return sizes


SIZES = parse_sizes(os.environ.get("DDJAX_KERNEL_SIZES", "3x512"))
SMALLEST = min(SIZES, key=lambda s: s[0] * s[1])


def centers_for(n: int) -> int:
    return min(512, max(1, n // 16))  # 1024 -> 64 (pretraining), 8192 -> 512


def cases(with_reference: bool):
    impls = IMPLEMENTATIONS + (["knn_reference"] if with_reference else [])
    return [
        pytest.param(size, impl, id=f"{size[0]}x{size[1]}-{impl}")
        for size in SIZES
        for impl in impls
        if impl != "pallas_interpret" or size == SMALLEST
    ]


def grid_units(clouds: np.ndarray) -> np.ndarray:
    """Grid coordinates as integers (the cloud times 256): every distance below is exact integer
    arithmetic."""
    return np.rint(clouds * GRID).astype(np.int64)


def fps_numpy(clouds: np.ndarray, num_samples: int) -> np.ndarray:
    """Batched FPS (start 0, running minimum, first argmax) in integer grid units: (B, N, 3) -> (B,
    S). The 1e10 initial minimum is above every grid distance, so only the order of the distances
    matters."""
    b = len(clouds)
    x, y, z = np.moveaxis(grid_units(clouds), -1, 0)  # each (B, N)
    rows = np.arange(b)
    dist = np.full(x.shape, np.iinfo(np.int64).max)
    idx = np.zeros((b, num_samples), np.int64)
    for s in range(1, num_samples):
        last = idx[:, s - 1]
        d = (
            (x - x[rows, last][:, None]) ** 2
            + (y - y[rows, last][:, None]) ** 2
            + (z - z[rows, last][:, None]) ** 2
        )  # (B, N)
        np.minimum(dist, d, out=dist)
        idx[:, s] = np.argmax(dist, axis=1)  # numpy's argmax is the first one
    return idx


def knn_numpy(queries: np.ndarray, clouds: np.ndarray, k: int) -> np.ndarray:
    """Exact kNN: squared distances in integer grid units pack with the index into one int64 key,
    and the k smallest keys are the lexicographic (distance, index) answer. (B, M, 3), (B, N, 3) ->
    (B, M, k)."""
    out = []
    n = clouds.shape[1]
    for q, c in zip(grid_units(queries), grid_units(clouds)):
        d = sum((q[:, None, i] - c[None, :, i]) ** 2 for i in range(3))  # (M, N)
        key = d * n + np.arange(n)  # (M, N), unique per row
        part = np.argpartition(key, k - 1, axis=1)[:, :k]  # (M, k), unordered
        order = np.argsort(np.take_along_axis(key, part, axis=1), axis=1)
        out.append(np.take_along_axis(part, order, axis=1))
    return np.stack(out)


@functools.cache
def problem(b: int, n: int):
    """Clouds, numpy FPS centers and numpy kNN for one size (computed once per size)."""
    clouds = procedural_clouds(np.random.default_rng(b * 100003 + n), b, n)
    clouds = (np.rint(clouds * GRID) / GRID).astype(np.float32)  # (B, N, 3) on the grid
    s = centers_for(n)
    centers_idx = fps_numpy(clouds, s)  # (B, S)
    centers = np.take_along_axis(clouds, centers_idx[..., None], axis=1)  # (B, S, 3)
    k = min(32, n)
    return clouds, centers_idx, centers, k, knn_numpy(centers, clouds, k)


def test_the_batched_numpy_references_equal_the_plain_brute_force():
    clouds, centers_idx, centers, k, nbr = problem(*SMALLEST)
    np.testing.assert_array_equal(centers_idx[0], ref.fps(clouds[0], centers_idx.shape[1]))
    np.testing.assert_array_equal(nbr[0, :8], ref.knn(centers[0, :8], clouds[0], k))
    d = ref.sq_dist(centers[0], clouds[0])
    srt = np.sort(d, axis=1)
    assert (srt[:, 1:] == srt[:, :-1]).any(), "the grid should produce exact distance ties"


@pytest.mark.parametrize("size, impl", cases(with_reference=False))
def test_fps_indices_equal_numpy(size, impl):
    clouds, centers_idx, _, _, _ = problem(*size)
    out = np.asarray(jax.jit(lambda p: fps(p, centers_idx.shape[1], implementation=impl))(clouds))
    mismatched = np.nonzero((out != centers_idx).any(axis=1))[0]
    assert not len(mismatched), (
        f"{impl} FPS differs from numpy in clouds {mismatched[:10].tolist()}"
    )


@pytest.mark.parametrize("size, impl", cases(with_reference=True))
def test_knn_indices_equal_numpy(size, impl):
    clouds, _, centers, k, nbr = problem(*size)
    # the flat jnp reference, whatever the size ('xla' is two-stage from 4096 points)
    if impl == "knn_reference":
        fn = jax.jit(lambda q, p: knn_reference(q, p, k))
    else:
        fn = jax.jit(lambda q, p: knn(q, p, k, implementation=impl))
    out = np.asarray(fn(centers, clouds))
    bad = (out != nbr).any(axis=2)  # (B, S)
    assert not bad.any(), (
        f"{impl} kNN differs from numpy for {int(bad.sum())} of {bad.size} queries "
        f"(clouds {np.nonzero(bad.any(axis=1))[0][:10].tolist()})"
    )
