"""Grouping (ReCon and the Dual Denoising variant) against numpy, and its gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import pointcloud
from tests import references as ref
from tests.kernel_cases import IMPLEMENTATIONS


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_group_matches_numpy(impl):
    points = ref.dyadic_cloud(np.random.default_rng(0), (2, 90, 3))
    out = jax.jit(
        lambda p: pointcloud.group(p, 10, 8, fps_implementation=impl, knn_implementation=impl)
    )(points)
    assert out.neighborhoods.shape == (2, 10, 8, 3) and out.centers.shape == (2, 10, 3)
    for b in range(2):
        nbh, centers = ref.group(points[b], 10, 8)
        np.testing.assert_array_equal(np.asarray(out.centers[b]), centers)
        np.testing.assert_array_equal(np.asarray(out.neighborhoods[b]), nbh)
    # Each center is a cloud point, hence its own nearest neighbour: the first offset is exactly
    # zero.
    np.testing.assert_array_equal(np.asarray(out.neighborhoods[:, :, 0]), 0.0)


def test_group_noisy_takes_fps_from_the_clean_cloud():
    rng = np.random.default_rng(1)
    clean = ref.dyadic_cloud(rng, (2, 80, 3))
    # a perturbation with the same order
    noisy = clean + ref.dyadic_cloud(rng, (2, 80, 3), levels=64)
    out = jax.jit(lambda c, n: pointcloud.group_noisy(c, n, 9, 6))(clean, noisy)
    for b in range(2):
        idx = ref.fps(clean[b], 9)  # FPS of the clean cloud, used for both clouds
        np.testing.assert_array_equal(np.asarray(out.clean.centers[b]), clean[b][idx])
        np.testing.assert_array_equal(np.asarray(out.noisy.centers[b]), noisy[b][idx])
        noisy_nbr = ref.knn(noisy[b][idx], noisy[b], 6)  # noisy tokens: kNN in the noisy cloud
        np.testing.assert_array_equal(
            np.asarray(out.noisy.neighborhoods[b]), noisy[b][noisy_nbr] - noisy[b][idx][:, None]
        )
        nbh, _ = ref.group(clean[b], 9, 6)  # targets: ordinary grouping of the clean cloud
        np.testing.assert_array_equal(np.asarray(out.clean.neighborhoods[b]), nbh)
    # FPS of the noisy cloud would pick other centers: the variant is not plain grouping of `noisy`.
    assert any(not np.array_equal(ref.fps(noisy[b], 9), ref.fps(clean[b], 9)) for b in range(2))


def _objective(points, w_nbh, w_ctr):
    groups = pointcloud.group(points, 6, 5)
    return jnp.sum(w_nbh * groups.neighborhoods**2) + jnp.sum(w_ctr * groups.centers)


def test_gradient_flows_through_gathers():
    rng = np.random.default_rng(2)
    points = rng.normal(size=(1, 40, 3)).astype(np.float32)
    w_nbh = rng.normal(size=(1, 6, 5, 3)).astype(np.float32)
    w_ctr = rng.normal(size=(1, 6, 3)).astype(np.float32)
    grad = np.asarray(jax.jit(jax.grad(_objective))(points, w_nbh, w_ctr))[0]

    # Analytic gradient with the indices held fixed (numpy scatter-add): for every group g and slot
    # j, d/dp of w*(p[nbr] - p[center])^2 adds 2w*diff to the neighbour and -2w*diff to the center.
    idx = ref.fps(points[0], 6)
    nbr = ref.knn(points[0][idx], points[0], 5)
    diff = points[0][nbr] - points[0][idx][:, None]  # (G, K, 3)
    expected = np.zeros_like(points[0], dtype=np.float64)
    np.add.at(expected, nbr, 2 * w_nbh[0] * diff)
    np.add.at(expected, idx, -(2 * w_nbh[0] * diff).sum(1))
    np.add.at(expected, idx, w_ctr[0])
    np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-5)

    # Central finite differences on coordinates whose perturbation keeps every index unchanged.
    f = jax.jit(_objective)
    eps, checked = 1e-2, 0
    for i, c in zip(*np.unravel_index(rng.choice(40 * 3, size=12, replace=False), (40, 3))):
        plus, minus = points.copy(), points.copy()
        plus[0, i, c] += eps
        minus[0, i, c] -= eps
        same = all(
            np.array_equal(ref.fps(p[0], 6), idx)
            and np.array_equal(ref.knn(p[0][idx], p[0], 5), nbr)
            for p in (plus, minus)
        )
        if not same:
            continue
        fd = (float(f(plus, w_nbh, w_ctr)) - float(f(minus, w_nbh, w_ctr))) / (2 * eps)
        np.testing.assert_allclose(grad[i, c], fd, rtol=2e-3, atol=2e-3)
        checked += 1
    assert checked >= 8


def test_gather_points_shapes():
    points = jnp.arange(2 * 5 * 3, dtype=jnp.float32).reshape(2, 5, 3)
    idx = jnp.array([[[4, 0]], [[1, 1]]])  # (2, 1, 2)
    out = pointcloud.gather_points(points, idx)
    assert out.shape == (2, 1, 2, 3)
    np.testing.assert_array_equal(np.asarray(out[1, 0, 0]), np.asarray(points[1, 1]))
    np.testing.assert_array_equal(np.asarray(out[0, 0, 0]), np.asarray(points[0, 4]))
