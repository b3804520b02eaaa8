"""Test set-up: offline Hugging Face, CPU JAX, and the shared real data (skipped with a reason if absent)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pathlib

import numpy as np
import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
MODELNET_DIR = SHARED_DATA / "modelnet40_normal_resampled"


def load_modelnet_clouds(count: int) -> np.ndarray:
    """The first `count` test shapes of the shared ModelNet40 sample as f32[count, 10000, 3] (xyz only)."""
    if not MODELNET_DIR.is_dir():
        pytest.skip(f"real ModelNet40 sample not found at {MODELNET_DIR} (it ships in ../shared/data)")
    names = (MODELNET_DIR / "modelnet40_test.txt").read_text().split()[:count]
    clouds = []
    for name in names:
        cls = name.rsplit("_", 1)[0]
        data = np.loadtxt(MODELNET_DIR / cls / f"{name}.txt", delimiter=",", dtype=np.float32)
        clouds.append(data[:, :3])
    return np.stack(clouds)


@pytest.fixture(scope="session")
def modelnet_clouds() -> np.ndarray:
    return load_modelnet_clouds(3)
