"""Chamfer-L2 and Smooth-L1 against numpy brute force and their formulas; the noise schedule."""

import jax
import jax.numpy as jnp
import numpy as np

from ddjax import losses, pointcloud


def numpy_chamfer(pred, target):
    """Brute force over groups: mean over all predicted points of the squared distance to the
    nearest target point, plus the same from the target side."""
    d1, d2 = [], []
    for p, q in zip(pred.reshape(-1, *pred.shape[-2:]), target.reshape(-1, *target.shape[-2:])):
        for a in p:
            d1.append(min(float(np.sum((a - b) ** 2)) for b in q))
        for b in q:
            d2.append(min(float(np.sum((a - b) ** 2)) for a in p))
    return np.mean(d1) + np.mean(d2)


def test_chamfer_l2_matches_brute_force():
    rng = np.random.default_rng(0)
    pred = rng.normal(size=(2, 3, 5, 3)).astype(np.float32)
    target = rng.normal(size=(2, 3, 7, 3)).astype(np.float32)  # P != Q
    np.testing.assert_allclose(
        float(losses.chamfer_l2(pred, target)), numpy_chamfer(pred, target), rtol=1e-5
    )
    per_sample = np.asarray(losses.chamfer_l2_per_sample(pred, target))
    for b in range(2):
        np.testing.assert_allclose(per_sample[b], numpy_chamfer(pred[b], target[b]), rtol=1e-5)
    np.testing.assert_allclose(per_sample.mean(), numpy_chamfer(pred, target), rtol=1e-5)


def test_chamfer_is_squared_and_summed():
    # One point each, distance 2 apart: d1 = d2 = 4 (squared, not 2), total 8 (summed, no 1/2).
    pred = np.zeros((1, 1, 3), np.float32)
    target = np.array([[[2.0, 0.0, 0.0]]], np.float32)
    assert float(losses.chamfer_l2(pred, target)) == 8.0
    assert float(losses.chamfer_l2(target, target)) == 0.0


def test_smooth_l1_formula():
    pred = np.array([0.0, 0.5, -0.9, 3.0, -2.5, 1.0], np.float32)
    target = np.zeros_like(pred)
    d = np.abs(pred)
    expected = np.where(d < 1, 0.5 * d**2, d - 0.5).mean()
    np.testing.assert_allclose(float(losses.smooth_l1(pred, target)), expected, rtol=1e-6)
    beta = 2.0
    expected = np.where(d < beta, 0.5 * d**2 / beta, d - 0.5 * beta).mean()
    np.testing.assert_allclose(float(losses.smooth_l1(pred, target, beta)), expected, rtol=1e-6)


def test_noise_schedule():
    sigma = lambda t: float(pointcloud.noise_sigma(t, noise_scale=0.08, num_timesteps=1000))
    assert sigma(0) == 0.0
    np.testing.assert_allclose(sigma(999), 0.08, rtol=1e-6)
    np.testing.assert_allclose(sigma(600), 0.08 * 600 / 999, rtol=1e-6)
    weight = np.asarray(pointcloud.loss_weight(jnp.array([0.0, 0.08])))
    np.testing.assert_allclose(weight, [1.0, 1 / (1 + 0.08**2)], rtol=1e-6)  # 0.99364, not larger
    points = jnp.asarray(np.random.default_rng(1).normal(size=(2, 500, 3)).astype(np.float32))
    key = jax.random.key(0)
    # t = 0 adds no noise at all.
    np.testing.assert_array_equal(
        np.asarray(pointcloud.add_noise(points, jnp.zeros(2), key)), np.asarray(points)
    )
    noisy = pointcloud.add_noise(points, jnp.array([0.05, 0.1]), key)
    std = np.asarray(jnp.std(noisy - points, axis=(1, 2)))
    np.testing.assert_allclose(std, [0.05, 0.1], rtol=0.1)  # per-sample sigma
