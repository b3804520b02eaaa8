"""Test set-up: offline Hugging Face, CPU JAX, a compilation cache of the session's own, matmul
precision for the comparison tests, and the shared real data (skipped with a reason if absent)."""

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The jobs turn JAX's persistent compilation cache on; tests keep theirs in a folder of this session
# (each xdist worker its own; child processes inherit it), never in the user's ~/.cache. `make
# device-check` sets one for all its items, which is kept.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="ddjax-test-jax-cache-"))

import pathlib

import numpy as np
import pytest

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "highest_precision: compares two computations of one quantity (vmapped vs looped, scanned "
        "vs "
        "unrolled, port vs reference): on an accelerator its float32 matmuls run at full "
        "precision, not TF32",
    )


@pytest.fixture(autouse=True)
def _highest_precision_on_accelerators(request):
    """JAX's default float32 matmul on NVIDIA GPUs is TF32 (a 10-bit mantissa, relative error
    ~1e-3): two ways of computing one quantity then differ by more than float32 rounding. Tests
    marked `highest_precision` run under jax.default_matmul_precision('highest') there; on a CPU the
    default already is full float32."""
    import jax

    if request.node.get_closest_marker("highest_precision") and jax.default_backend() != "cpu":
        with jax.default_matmul_precision("highest"):
            yield
    else:
        yield


ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_path() -> str:
    """PYTHONPATH for a child Python: the repository first, then whatever this process was given
    (the GPU image's twin puts the device wheels there)."""
    return os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )


MODELNET_DIR = SHARED_DATA / "modelnet40_normal_resampled"


def load_modelnet_clouds(count: int) -> np.ndarray:
    """The first `count` test shapes of the shared ModelNet40 sample as f32[count, 10000, 3] (xyz
    only)."""
    if not MODELNET_DIR.is_dir():
        pytest.skip(
            f"real ModelNet40 sample not found at {MODELNET_DIR} (it ships in ../shared/data)"
        )
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
    """The tiny synthetic_shapes config, prepared once per test session (4 train / 2 test per
    class)."""
    from ddjax.data import prepare

    return prepare.prepare("synthetic_shapes/tiny", tmp_path_factory.mktemp("tfds"))


CLIP_TOKENIZER_DIR = SHARED_DATA / "clip_tokenizer"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


def make_tiny_clip(
    directory: pathlib.Path, *, image_size: int = 32, projection_dim: int = 16
) -> pathlib.Path:
    """A random-weight tiny Flax CLIP saved to `directory`, with the real CLIP tokenizer files
    beside it."""
    from transformers import FlaxCLIPModel

    from ddjax.teachers import tiny_clip

    if not all((CLIP_TOKENIZER_DIR / f).is_file() for f in TOKENIZER_FILES):
        pytest.skip(
            f"real CLIP tokenizer files not found at {CLIP_TOKENIZER_DIR} (they ship in "
            "../shared/data)"
        )
    config = tiny_clip.tiny_clip_config(
        image_size=image_size, width=32, layers=2, projection_dim=projection_dim, vocab_size=49408
    )
    FlaxCLIPModel(config, seed=0).save_pretrained(directory)
    assert tiny_clip.write_tokenizer(directory, CLIP_TOKENIZER_DIR) == "clip"
    return directory


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> pathlib.Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def modelnet_prepared(tmp_path_factory):
    """ModelNet40 and ModelNet10 built from the real shared sample, once per session."""
    if not MODELNET_DIR.is_dir():
        pytest.skip(
            f"real ModelNet40 sample not found at {MODELNET_DIR} (it ships in ../shared/data)"
        )
    from ddjax.data import prepare

    data_dir = tmp_path_factory.mktemp("tfds_modelnet")
    return {
        name: prepare.prepare(name, data_dir, MODELNET_DIR) for name in ("modelnet40", "modelnet10")
    }


@pytest.fixture(scope="session")
def run_dir(synthetic_tiny, tmp_path_factory):
    """A 2-step pretraining run of the tiny model on the tiny synthetic set (with its own tiny
    teacher)."""
    from ddjax.jobs import pretrain
    from tests.test_train import data_root, tiny_run_config

    out = tmp_path_factory.mktemp("run")
    pretrain.run(tiny_run_config(data_root(synthetic_tiny), total_steps=2), str(out))
    return out
