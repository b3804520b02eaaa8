"""kNN against a numpy brute force: exact ordered indices where arithmetic is exact, distances
elsewhere."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import knn, knn_reference
from kernels.knn import knn_blocked
from tests import references as ref
from tests.kernel_cases import IMPLEMENTATIONS


def run(queries, points, k, impl):
    return np.asarray(jax.jit(lambda q, p: knn(q, p, k, implementation=impl))(queries, points))


def brute_force(queries, points, k):
    return np.stack([ref.knn(q, p, k) for q, p in zip(queries, points)])


def assert_matches_float_cloud(out, queries, points, k):
    """For real-valued clouds: the returned distances are the k smallest, nearest first, and the
    index set is exactly the brute force's wherever the k-th and (k+1)-th distances are not a
    float32 near-tie."""
    for b in range(len(points)):
        d = ref.sq_dist(queries[b], points[b])  # (M, N) float64
        got = np.take_along_axis(d, out[b], axis=1)
        want = np.sort(d, axis=1)[:, :k]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        expected = ref.knn(queries[b], points[b], k)
        srt = np.sort(d, axis=1)
        clear = (
            srt[:, k] - srt[:, k - 1] > 1e-6 * srt[:, k]
            if k < d.shape[1]
            else np.ones(len(d), bool)
        )
        assert clear.mean() > 0.9, clear.mean()
        for m in np.nonzero(clear)[0]:
            assert set(out[b, m].tolist()) == set(expected[m].tolist())


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_exact_grid_with_ties(impl):
    rng = np.random.default_rng(0)
    points = ref.dyadic_cloud(rng, (2, 100, 3))
    queries = ref.dyadic_cloud(rng, (2, 21, 3))  # M not a multiple of the query block
    out = run(queries, points, 7, impl)
    assert out.dtype == np.int32 and out.shape == (2, 21, 7)
    np.testing.assert_array_equal(out, brute_force(queries, points, 7))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_duplicates_and_k_equals_n(impl):
    rng = np.random.default_rng(1)
    unique = ref.dyadic_cloud(rng, (1, 12, 3))
    points = unique[:, rng.integers(0, 12, size=37)]  # every point duplicated ~3 times
    queries = points[:, :5]
    out = run(queries, points, 37, impl)
    np.testing.assert_array_equal(out, brute_force(queries, points, 37))
    assert all(sorted(row) == list(range(37)) for row in out[0].tolist())


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_random_float_clouds(impl):
    rng = np.random.default_rng(2)
    points = rng.normal(size=(2, 300, 3)).astype(np.float32)
    queries = points[:, :40]  # queries are cloud points, as in grouping: each is its own nearest
    out = run(queries, points, 16, impl)
    assert_matches_float_cloud(out, queries, points, 16)
    np.testing.assert_array_equal(out[:, :, 0], np.broadcast_to(np.arange(40), (2, 40)))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_vmap_over_an_extra_axis(impl):
    rng = np.random.default_rng(3)
    points = ref.dyadic_cloud(rng, (2, 2, 30, 3))
    queries = ref.dyadic_cloud(rng, (2, 2, 6, 3))
    out = np.asarray(
        jax.jit(jax.vmap(lambda q, p: knn(q, p, 5, implementation=impl)))(queries, points)
    )
    np.testing.assert_array_equal(
        out.reshape(4, 6, 5), brute_force(queries.reshape(4, 6, 3), points.reshape(4, 30, 3), 5)
    )


def test_blocked_search_is_exact():
    # The two-stage search that 'xla' uses from 4096 points on; small block sizes exercise the
    # padding (N not a multiple of the block) and k larger than the number of blocks.
    rng = np.random.default_rng(4)
    points = ref.dyadic_cloud(rng, (2, 101, 3))
    queries = ref.dyadic_cloud(rng, (2, 9, 3))
    for k, block in [(8, 16), (20, 8), (30, 4), (101, 16)]:
        out = np.asarray(jax.jit(lambda q, p: knn_blocked(q, p, k, block=block))(queries, points))
        np.testing.assert_array_equal(
            out, brute_force(queries, points, k), err_msg=f"k={k} block={block}"
        )


def test_xla_switches_to_blocked_search_on_large_clouds():
    rng = np.random.default_rng(5)
    points = ref.dyadic_cloud(rng, (1, 4100, 3), levels=16)
    queries = points[:, :64]
    out = run(queries, points, 32, "xla")
    np.testing.assert_array_equal(out, brute_force(queries, points, 32))


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
def test_real_modelnet_clouds(impl, modelnet_clouds):
    queries = modelnet_clouds[:, ::157][:, :64]  # 64 cloud points spread over each shape
    out = run(queries, modelnet_clouds, 32, impl)
    assert_matches_float_cloud(out, queries, modelnet_clouds, 32)


def test_default_implementation_and_reference_agree():
    rng = np.random.default_rng(6)
    points = rng.normal(size=(2, 64, 3)).astype(np.float32)
    np.testing.assert_array_equal(
        np.asarray(knn(points[:, :8], points, 6)),
        np.asarray(knn_reference(jnp.asarray(points[:, :8]), jnp.asarray(points), 6)),
    )
