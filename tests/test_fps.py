"""FPS against independent references: a numpy brute force (spec D3) and the `fpsample` package."""

import fpsample
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import fps, fps_reference
from tests import references as ref
from tests.kernel_cases import IMPLEMENTATIONS


def run(points, num_samples, impl):
    return np.asarray(jax.jit(lambda p: fps(p, num_samples, implementation=impl))(points))


def brute_force(points, num_samples):
    return np.stack([ref.fps(c, num_samples) for c in points])


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_random_clouds_match_numpy_and_fpsample(impl):
    # N not a power of 2
    points = np.random.default_rng(0).normal(size=(3, 200, 3)).astype(np.float32)
    out = run(points, 33, impl)
    assert out.dtype == np.int32 and out.shape == (3, 33)
    np.testing.assert_array_equal(out, brute_force(points, 33))
    for b in range(3):
        np.testing.assert_array_equal(out[b], fpsample.fps_sampling(points[b], 33, start_idx=0))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_single_cloud_all_points(impl):
    points = np.random.default_rng(1).uniform(-1, 1, size=(1, 37, 3)).astype(np.float32)
    out = run(points, 37, impl)
    np.testing.assert_array_equal(out, brute_force(points, 37))
    assert sorted(out[0].tolist()) == list(range(37))  # a permutation: every point once


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_ties_grid_and_duplicates_take_the_first_argmax(impl):
    rng = np.random.default_rng(2)
    grid = np.stack(
        np.meshgrid(*[np.arange(5, dtype=np.float32) / 4] * 3, indexing="ij"), -1
    ).reshape(-1, 3)
    grid = grid[rng.permutation(len(grid))][:120]  # grid-aligned, many equal distances
    unique = ref.dyadic_cloud(rng, (40, 3))
    dup = unique[rng.integers(0, 40, size=120)]  # duplicated points: running minima hit exact zeros
    points = np.stack([grid, dup])
    out = run(points, 60, impl)  # 60 samples > 40 distinct points in the second cloud
    np.testing.assert_array_equal(out, brute_force(points, 60))


def test_fpsample_breaks_ties_to_the_last_index():
    # Why tie-heavy clouds are checked against the numpy brute force only: fpsample takes the *last*
    # argmax on ties (first argmax is spec D3). On tie-free clouds the two agree (tested above).
    points = ref.dyadic_cloud(np.random.default_rng(3), (300, 3))
    ours = np.asarray(fps(points[None], 100))[0]
    np.testing.assert_array_equal(
        fpsample.fps_sampling(points, 100, start_idx=0), ref.fps(points, 100, ties="last")
    )
    assert not np.array_equal(ours, ref.fps(points, 100, ties="last"))
    np.testing.assert_array_equal(ours, ref.fps(points, 100, ties="first"))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_vmap_over_an_extra_axis(impl):
    points = np.random.default_rng(4).normal(size=(2, 2, 50, 3)).astype(np.float32)
    out = np.asarray(jax.jit(jax.vmap(lambda p: fps(p, 9, implementation=impl)))(points))
    np.testing.assert_array_equal(out.reshape(4, 9), brute_force(points.reshape(4, 50, 3), 9))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_real_modelnet_clouds(impl, modelnet_clouds):
    out = run(modelnet_clouds, 64, impl)
    for b, cloud in enumerate(modelnet_clouds):
        np.testing.assert_array_equal(out[b], fpsample.fps_sampling(cloud, 64, start_idx=0))
        np.testing.assert_array_equal(out[b], ref.fps(cloud, 64))


def test_default_implementation_and_reference_agree():
    points = np.random.default_rng(5).normal(size=(2, 70, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(fps(points, 12)), np.asarray(fps_reference(jnp.asarray(points), 12))
    )


def test_no_gradient_flows_through_indices():
    points = jnp.asarray(np.random.default_rng(6).normal(size=(1, 20, 3)).astype(np.float32))
    grad = jax.grad(lambda p: jnp.sum(fps(p, 5).astype(jnp.float32)) + jnp.sum(p))(points)
    np.testing.assert_array_equal(np.asarray(grad), np.ones_like(points))
