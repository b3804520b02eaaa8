"""The ModelNet txt reader: real files parse; malformed files name the file and line."""
import numpy as np
import pytest

from ddjax.data import readers
from tests.conftest import MODELNET_DIR


def test_reads_real_modelnet_file():
    candidates = sorted(MODELNET_DIR.glob("airplane/*.txt")) if MODELNET_DIR.is_dir() else []
    if not candidates:
        pytest.skip(f"real ModelNet40 sample not found at {MODELNET_DIR} (it ships in ../shared/data)")
    path = candidates[0]
    data = readers.read_modelnet_txt(path)
    assert data.shape == (10000, 6) and data.dtype == np.float32
    first = [float(v) for v in path.read_text().splitlines()[0].split(",")]
    np.testing.assert_allclose(data[0], first, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(data[:, 3:], axis=1), 1.0, atol=1e-3)  # unit normals


@pytest.mark.parametrize("content, match", [
    ("", r"no points \(empty file\)"),
    ("1,2,3,0,0,1\n1,2,3\n", r":2: expected 6 comma-separated values"),
    ("1,2,x,0,0,1\n", r":1: not a number"),
    ("1,2,3,0,0,1\nnan,0,0,0,0,1\n", r":2: non-finite value"),
])
def test_malformed_files(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=rf"{path}{match}" if match.startswith(":") else match):
        readers.read_modelnet_txt(path)
