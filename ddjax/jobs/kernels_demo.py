"""The kernels_demo job (configs/kernels_demo.py): group a batch of clouds with every kernel
implementation, check that they agree, time them, write DIR/kernels_demo.json."""

from __future__ import annotations

import json
import os
import pathlib
import time

import jax
import numpy as np

from ddjax import config_checks, errors, pointcloud, run_folder
from ddjax.data import readers, synthetic
from kernels import backend

KEYS = {
    "": {
        "job",
        "seed",
        "data_dir",
        "batch_size",
        "num_points",
        "num_groups",
        "group_size",
        "repeats",
        "interpret_batch_size",
    }
}


def modelnet_clouds(data_dir: str, batch: int, num_points: int) -> np.ndarray:
    """The first `batch` test shapes of a modelnet40_normal_resampled folder, first `num_points`
    points."""
    root = pathlib.Path(data_dir).expanduser()
    split = root / "modelnet40_test.txt"
    if not split.is_file():
        raise errors.ConfigError(
            "data_dir",
            f"{split} not found",
            "pass a modelnet40_normal_resampled folder (the PointNet++ authors' archive)",
        )
    names = split.read_text().split()[:batch]
    clouds = [
        readers.read_modelnet_txt(root / n.rsplit("_", 1)[0] / f"{n}.txt")[:num_points, :3]
        for n in names
    ]
    return np.stack(clouds)


def _median_seconds(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def check_config(config, workdir: str | None = None) -> None:
    config_checks.check_keys(config, KEYS)
    for key in ("batch_size", "num_points", "repeats"):
        config_checks.check_int(config, key, 1)
    config_checks.check_int(config, "num_groups", 1, config.num_points)
    config_checks.check_int(config, "group_size", 1, config.num_points)
    config_checks.check_int(config, "interpret_batch_size", 1, config.batch_size)
    config_checks.check_seed(config)
    if config.data_dir and not os.path.isdir(os.path.expanduser(config.data_dir)):
        raise errors.ConfigError("data_dir", f"{config.data_dir} does not exist or is not a folder")


def run(config, workdir: str | None) -> dict:
    check_config(config)
    rng = np.random.default_rng(config.seed)
    if config.data_dir:
        clouds = modelnet_clouds(config.data_dir, config.batch_size, config.num_points)
    else:
        clouds = synthetic.procedural_clouds(rng, config.batch_size, config.num_points)
    b, n, _ = clouds.shape
    print(
        f"ddjax kernels demo on {jax.default_backend()}: {b} clouds x {n} points -> "
        f"{config.num_groups} groups x {config.group_size} points"
    )
    impls = ["xla", "pallas_interpret"] + (["pallas"] if backend.platform() == "gpu" else [])
    results = {}
    expected = None
    for impl in impls:
        batch = clouds[: config.interpret_batch_size] if impl == "pallas_interpret" else clouds
        fn = jax.jit(
            lambda p, impl=impl: pointcloud.group(
                p,
                config.num_groups,
                config.group_size,
                fps_implementation=impl,
                knn_implementation=impl,
            )
        )
        seconds = _median_seconds(fn, batch, repeats=config.repeats)
        groups = jax.device_get(fn(batch))
        if expected is None:
            expected = groups
        same = all(
            np.array_equal(np.asarray(a), np.asarray(e)[: len(batch)])
            for a, e in zip(groups, expected)
        )
        results[impl] = {
            "clouds": len(batch),
            "ms_per_cloud": 1e3 * seconds / len(batch),
            "equals_xla": same,
        }
        print(f"  {impl:17s} {1e3 * seconds / len(batch):9.3f} ms/cloud   equals xla: {same}")
    summary = {
        "backend": jax.default_backend(),
        "num_points": n,
        "num_groups": config.num_groups,
        "group_size": config.group_size,
        "implementations": results,
    }
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        path = os.path.join(workdir, "kernels_demo.json")
        run_folder.write_text(path, json.dumps(summary, indent=2))
        print(f"wrote {path}")
    if not all(r["equals_xla"] for r in results.values()):
        raise RuntimeError("kernel implementations disagree; see the table above")
    return summary
