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


@pytest.fixture(scope="session")
def synthetic_tiny(tmp_path_factory):
    """The tiny synthetic_shapes config, prepared once per test session (4 train / 2 test per class)."""
    from ddjax.data import prepare
    return prepare.prepare("synthetic_shapes/tiny", tmp_path_factory.mktemp("tfds"))


CLIP_TOKENIZER_DIR = SHARED_DATA / "clip_tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


def make_tiny_clip(directory: pathlib.Path, *, image_size: int = 32, projection_dim: int = 16) -> pathlib.Path:
    """A random-weight tiny Flax CLIP saved to `directory`, with the real CLIP tokenizer files beside it."""
    import shutil

    from transformers import CLIPConfig, FlaxCLIPModel

    if not CLIP_TOKENIZER_DIR.is_dir():
        pytest.skip(f"real CLIP tokenizer files not found at {CLIP_TOKENIZER_DIR} (they ship in ../shared/data)")
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                         vocab_size=49408, max_position_embeddings=77),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_attention_heads=2, num_hidden_layers=2,
                           image_size=image_size, patch_size=8),
        projection_dim=projection_dim)
    FlaxCLIPModel(config, seed=0).save_pretrained(directory)
    for name in TOKENIZER_FILES:
        shutil.copy(CLIP_TOKENIZER_DIR / name, directory / name)
    return directory


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> pathlib.Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))
