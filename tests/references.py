"""Independent numpy brute-force references for the kernels and grouping (no JAX)."""

import numpy as np


def sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a (M, 3), b (N, 3) -> (M, N) squared distances in float64."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def fps(cloud: np.ndarray, num_samples: int, *, ties: str = "first") -> np.ndarray:
    """Farthest point sampling of one cloud (N, 3): start at 0, running min, argmax ('first' or
    'last')."""
    n = len(cloud)
    dist = np.full(n, 1e10)
    idx = [0]
    for _ in range(1, num_samples):
        dist = np.minimum(dist, sq_dist(cloud[idx[-1]][None], cloud)[0])
        nxt = np.argmax(dist) if ties == "first" else n - 1 - np.argmax(dist[::-1])
        idx.append(int(nxt))
    return np.array(idx)


def knn(queries: np.ndarray, cloud: np.ndarray, k: int) -> np.ndarray:
    """(M, k) indices of the k nearest points, by (distance, index) lexicographically."""
    d = sq_dist(queries, cloud)
    order = np.arange(len(cloud))
    return np.stack([np.lexsort((order, row))[:k] for row in d])


def group(cloud: np.ndarray, num_groups: int, group_size: int):
    """ReCon grouping of one cloud -> (neighborhoods (G, K, 3), centers (G, 3))."""
    centers = cloud[fps(cloud, num_groups)]
    nbr = knn(centers, cloud, group_size)
    return cloud[nbr] - centers[:, None, :], centers


def dyadic_cloud(rng: np.random.Generator, shape, levels: int = 8) -> np.ndarray:
    """Coordinates on a 1/levels grid in [-1, 1]: every squared distance is exact in float32, with
    ties."""
    return (rng.integers(-levels, levels + 1, size=shape) / levels).astype(np.float32)
