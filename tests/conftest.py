"""Test set-up: offline Hugging Face, CPU JAX, a compilation cache of the session's own, matmul
precision for the comparison tests, and the project's reference data.

Reference data: the files in ../shared/data beside the project's own checkout (the peers' reference
outputs, the real ModelNet40 sample and meshes, the official label lists), which a user's clone does
not have. A test that reads them gets them from `reference_path` (which skips it, with one reason,
where they are absent) and carries the `reference_data` marker (tests using the ModelNet fixtures
get it here), so `make test-reference` (pytest -m reference_data) runs exactly them from the
project's checkout. A test that skips for missing reference data without the marker fails: it would
run nowhere. The session ends with one line counting the skipped tests by reason.
"""

import collections
import contextlib
import fcntl
import os
import pathlib
import shutil
import sys
import tempfile

import numpy as np
import pytest

# before anything imports jax
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# The jobs turn JAX's persistent compilation cache on; tests keep theirs in a folder of this session
# (xdist workers and child processes inherit it), never in the user's ~/.cache, and the session
# that made it removes it at its end. `make device-check` sets one for all its items, which is kept.
_OWN_JAX_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _OWN_JAX_CACHE = tempfile.mkdtemp(prefix="ddjax-test-jax-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_JAX_CACHE

# benchmarks/test_profile.py: XLA compilations counted per test, in this process and its children
COMPILE_LOG = pathlib.Path(__file__).resolve().parent / "compile_log"
if os.environ.get("DDJAX_COMPILE_LOG"):
    sys.path.insert(0, str(COMPILE_LOG))
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(COMPILE_LOG)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    import compile_log

    compile_log.install()

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


REFERENCE_SKIP = "needs the project's reference data (../shared/data), not beside this checkout"
# fixtures that read the reference data: their tests get the marker
REFERENCE_FIXTURES = ("modelnet_clouds", "modelnet_prepared")


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "highest_precision: compares two computations of one quantity (vmapped vs looped, scanned "
        "vs "
        "unrolled, port vs reference): on an accelerator its float32 matmuls run at full "
        "precision, not TF32",
    )
    config.addinivalue_line(
        "markers",
        "reference_data: reads ../shared/data (reference_path); `make test-reference` runs these",
    )


def pytest_collection_modifyitems(config, items):
    for item in items:
        if set(getattr(item, "fixturenames", ())) & set(REFERENCE_FIXTURES):
            item.add_marker(pytest.mark.reference_data)


def reference_path(*parts: str) -> pathlib.Path:
    """SHARED_DATA/parts, or a skip of the calling test (REFERENCE_SKIP) where it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{REFERENCE_SKIP}: {'/'.join(parts)}")
    return path


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (
        report.skipped
        and REFERENCE_SKIP in _skip_reason(report)
        and not item.get_closest_marker("reference_data")
    ):
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} skipped for missing reference data without the reference_data "
            "marker: `make test-reference` would never run it; mark it"
        )


def _skip_reason(report) -> str:
    longrepr = report.longrepr
    reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
    return reason.removeprefix("Skipped: ")


def pytest_terminal_summary(terminalreporter):
    """One line: how many tests were skipped, and why (grouped by the reason before any ':')."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons = collections.Counter(_skip_reason(r).split(": ")[0] for r in skipped)
    terminalreporter.write_line(
        f"{len(skipped)} skipped: " + "; ".join(f"{n} {why}" for why, n in reasons.most_common())
    )


def pytest_unconfigure(config):
    if _OWN_JAX_CACHE is not None:
        shutil.rmtree(_OWN_JAX_CACHE, ignore_errors=True)


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


def env_without_coverage() -> dict:
    """This process's environment less make test's coverage, for a child whose limits (a time limit
    on its start-up, a file-size limit) coverage's own start-up or data file would meet."""
    return {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}


MODELNET_DIR = SHARED_DATA / "modelnet40_normal_resampled"


def load_modelnet_clouds(count: int) -> np.ndarray:
    """The first `count` test shapes of the shared ModelNet40 sample as f32[count, 10000, 3] (xyz
    only)."""
    reference_path(MODELNET_DIR.name)
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


def make_tiny_clip(
    directory: pathlib.Path, *, image_size: int = 32, projection_dim: int = 16
) -> pathlib.Path:
    """A random-weight tiny Flax CLIP saved to `directory`, with the package's CLIP tokenizer files
    beside it."""
    from transformers import CLIPTokenizer, FlaxCLIPModel

    from ddjax.teachers import tiny_clip

    assert tiny_clip.write_tokenizer(directory) == "clip"
    tokenizer = CLIPTokenizer.from_pretrained(directory)
    config = tiny_clip.tiny_clip_config(
        image_size=image_size,
        width=32,
        layers=2,
        projection_dim=projection_dim,
        vocab_size=len(tokenizer),
        **tiny_clip.special_token_ids(tokenizer),
    )
    FlaxCLIPModel(config, seed=0).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> pathlib.Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


def run_folder(tmp_path_factory) -> pathlib.Path:
    """The test run's own folder: shared by its xdist workers (each has a basetemp inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def run_lock(tmp_path_factory, name: str):
    """Holds the test run's lock `name` (across its xdist workers): the first worker to take it
    builds what it guards, the others wait for it and then find it built."""
    with open(run_folder(tmp_path_factory) / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


# The tests' trained teacher (`teacher_dir`): the smoke config's tiny teacher at test sizes, with
# the character-level tokenizer (so the fallback is shown to learn in every test run).
TEST_TEACHER = dict(width=32, steps=400, tokenizer_dir="fallback")


@pytest.fixture(scope="session")
def teacher_dir(synthetic_tiny, tmp_path_factory) -> pathlib.Path:
    """A tiny CLIP trained on synthetic_shapes/tiny's 48 renders (TEST_TEACHER), once
    per test run and shared by the xdist workers: a teacher that passes every check of
    ddjax/teachers/sanity.py, for the tests of pretraining's mechanics (--config.teacher=DIR)."""
    from ddjax.teachers import cache, tiny_clip

    out = run_folder(tmp_path_factory) / "test_teacher"
    with run_lock(tmp_path_factory, "test_teacher"):  # one worker trains it, the others wait
        if not (out / tiny_clip.REPORT).is_file():
            tiny_clip.train(
                out,
                synthetic_tiny.as_data_source("train"),
                cache.class_texts(synthetic_tiny),
                image_pipeline="clip",
                log=None,
                **TEST_TEACHER,
            )
    return out


@pytest.fixture(scope="session")
def modelnet_prepared(tmp_path_factory):
    """ModelNet40 and ModelNet10 built from the real shared sample, once per test run and shared by
    the xdist workers (the first builds them, about 30 s of FPS; the others find them prepared)."""
    reference_path(MODELNET_DIR.name)
    from ddjax.data import prepare

    data_dir = run_folder(tmp_path_factory) / "tfds_modelnet"
    with run_lock(tmp_path_factory, "tfds_modelnet"):
        return {
            name: prepare.prepare(name, data_dir, MODELNET_DIR)
            for name in ("modelnet40", "modelnet10")
        }


@pytest.fixture(scope="session")
def run_dir(synthetic_tiny, teacher_dir, tmp_path_factory):
    """A 2-step pretraining run of the tiny model on the tiny synthetic set, with a copy of the
    tests' trained teacher inside it (`./teacher`, as the smoke run keeps its own)."""
    import shutil

    from ddjax.jobs import pretrain
    from tests.test_train import data_root, tiny_run_config

    out = tmp_path_factory.mktemp("run")
    shutil.copytree(teacher_dir, out / "teacher")
    config = tiny_run_config(data_root(synthetic_tiny), out / "teacher", total_steps=2)
    pretrain.run(config, str(out))
    return out
