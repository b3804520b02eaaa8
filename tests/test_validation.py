"""Bad input gets a ValueError naming the argument and the shapes, at trace time."""

import jax
import numpy as np
import pytest
from jax.experimental import checkify

from ddjax import pointcloud
from kernels import fps, knn

CLOUD = np.zeros((2, 10, 3), np.float32)


@pytest.mark.parametrize(
    "points, num_samples, match",
    [
        (
            np.zeros((10, 3), np.float32),
            4,
            r"`points` must have shape \[B, N, 3\], got shape \(10, 3\)",
        ),
        (
            np.zeros((2, 10, 2), np.float32),
            4,
            r"`points` must have shape \[B, N, 3\], got shape \(2, 10, 2\)",
        ),
        (np.zeros((2, 10, 3), np.int32), 4, r"`points` must be a floating-point array"),
        (CLOUD, 11, r"`num_samples` must be in \[1, N=10\], got 11"),
        (CLOUD, 0, r"`num_samples` must be in \[1, N=10\], got 0"),
        (CLOUD, 2.0, r"`num_samples` must be an integer, got 2.0"),
        (CLOUD, True, r"`num_samples` must be an integer"),
    ],
)
def test_fps_bad_arguments(points, num_samples, match):
    with pytest.raises(ValueError, match=match):
        fps(points, num_samples)
    with pytest.raises(ValueError, match=match):  # at trace time, inside jit
        jax.jit(lambda p: fps(p, num_samples))(points)


@pytest.mark.parametrize(
    "queries, points, k, match",
    [
        (
            np.zeros((2, 4), np.float32),
            CLOUD,
            3,
            r"`queries` must have shape \[B, N, 3\], got shape \(2, 4\)",
        ),
        (
            np.zeros((2, 4, 3), np.float32),
            np.zeros((2, 10, 4), np.float32),
            3,
            r"`points` must have shape",
        ),
        (
            np.zeros((3, 4, 3), np.float32),
            CLOUD,
            3,
            r"same batch size, got shapes \(3, 4, 3\) and \(2, 10, 3\)",
        ),
        (np.zeros((2, 4, 3), np.float32), CLOUD, 11, r"`k` must be in \[1, N=10\], got 11"),
        (np.zeros((2, 4, 3), np.float32), CLOUD, np.float32(3), r"`k` must be an integer"),
    ],
)
def test_knn_bad_arguments(queries, points, k, match):
    with pytest.raises(ValueError, match=match):
        knn(queries, points, k)


def test_numpy_integer_sizes_are_accepted():
    assert fps(CLOUD + np.arange(10, dtype=np.float32)[:, None], np.int64(3)).shape == (2, 3)


def test_unknown_and_unavailable_implementations():
    with pytest.raises(ValueError, match=r"implementation must be one of"):
        fps(CLOUD, 3, implementation="cuda")
    if jax.default_backend() == "cpu":
        with pytest.raises(ValueError, match=r"needs a GPU backend.*pallas_interpret"):
            knn(CLOUD, CLOUD, 3, implementation="pallas")


def test_check_finite():
    bad = CLOUD.copy()
    bad[1, 3, 0] = np.nan
    with pytest.raises(
        ValueError, match=r"`points` has 1 non-finite coordinates \(in batch entries \[1\]\)"
    ):
        fps(bad, 3, check_finite=True)
    with pytest.raises(ValueError, match=r"`queries` has 1 non-finite"):
        knn(bad, CLOUD, 3, check_finite=True)
    with pytest.raises(ValueError, match=r"group_noisy: `noisy` has 1 non-finite"):
        pointcloud.group_noisy(CLOUD, bad, 3, 2, check_finite=True)
    # Under jit the check is staged through checkify.
    err, _ = checkify.checkify(jax.jit(lambda p: fps(p, 3, check_finite=True)))(bad)
    with pytest.raises(ValueError, match=r"fps: `points` has 1 non-finite coordinates"):
        err.throw()
    err, _ = checkify.checkify(jax.jit(lambda p: fps(p, 3, check_finite=True)))(CLOUD)
    err.throw()  # finite input: no error
    # Without the option, NaN is not checked (documented: indices are then unspecified).
    assert fps(bad, 3).shape == (2, 3)


def test_group_noisy_shape_mismatch():
    with pytest.raises(ValueError, match=r"same shape, got \(2, 10, 3\) and \(2, 9, 3\)"):
        pointcloud.group_noisy(CLOUD, CLOUD[:, :9], 3, 2)
