"""kernels/backend.py: the per-backend defaults and the line every job starts with."""
import jax
import pytest

from kernels import backend


@pytest.mark.parametrize("name, platform, fps, knn", [
    ("cpu", "cpu", "xla", "xla"),
    ("cuda", "gpu", "pallas", "xla"),
    ("rocm", "gpu", "pallas", "xla"),
    ("tpu", "tpu", "xla", "xla"),
    ("metal", "metal", "xla", "xla"),  # a backend without a table entry falls back to XLA
])
def test_defaults_per_backend(monkeypatch, name, platform, fps, knn):
    monkeypatch.setattr(jax, "default_backend", lambda: name)
    assert backend.platform() == platform
    assert backend.resolve("fps", None) == fps and backend.resolve("knn", None) == knn


def test_describe_names_version_backend_devices_and_kernels():
    line = backend.describe()
    assert line == (f"jax {jax.__version__}, backend cpu: {jax.device_count()} x cpu (1 process); "
                    "kernels fps=xla, knn=xla")
