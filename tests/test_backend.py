"""kernels/backend.py: the per-backend defaults and the line every job starts with."""

import jax
import pytest

from kernels import backend


@pytest.mark.parametrize(
    "name, platform, fps, knn",
    [
        ("cpu", "cpu", "xla", "xla"),
        ("cuda", "gpu", "pallas", "xla"),
        ("rocm", "gpu", "pallas", "xla"),
        ("tpu", "tpu", "xla", "xla"),
        ("metal", "metal", "xla", "xla"),  # a backend without a table entry falls back to XLA
    ],
)
def test_defaults_per_backend(monkeypatch, name, platform, fps, knn):
    monkeypatch.setattr(jax, "default_backend", lambda: name)
    assert backend.platform() == platform
    assert backend.resolve("fps", None) == fps and backend.resolve("knn", None) == knn


def test_describe_names_version_backend_devices_and_kernels():
    # On whatever backend the suite runs (the device check runs it on a GPU): the line names that
    # backend, its device kind and the table's kernels for it.
    line = backend.describe()
    kind = jax.devices()[0].device_kind
    fps, knn = backend.resolve("fps", None), backend.resolve("knn", None)
    assert line == (
        f"jax {jax.__version__}, backend {jax.default_backend()}: {jax.device_count()} x {kind} "
        f"(1 process); kernels fps={fps}, knn={knn}"
    )
    assert (fps, knn) == {"cpu": ("xla", "xla"), "gpu": ("pallas", "xla"), "tpu": ("xla", "xla")}[
        backend.platform()
    ]
