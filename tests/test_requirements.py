"""The requirement files agree: what CI's GPU-image twin tests is what a Python 3.12 user installs.

requirements-py312.txt is the user's Python 3.12 / jax 0.11.2 install; requirements-gpu-image.txt is
the GPU image CI imitates; device-wheels.txt names what `make device-wheels` carries on top of the
image, at the versions of requirements-py312.txt. CI runs the suite on image + wheels, so that must
equal requirements-py312.txt.
"""

import pathlib

import pytest

from benchmarks import device_wheels

ROOT = pathlib.Path(__file__).resolve().parents[1]
# The image has these at versions transformers 4.57 refuses at import (5.x, huggingface-hub 1.x,
# tokenizers 0.23.2).
SHADOWED = {"transformers", "huggingface-hub", "tokenizers"}


@pytest.fixture(scope="module")
def files():
    py312 = device_wheels.read_pins(ROOT / "requirements-py312.txt")
    image = device_wheels.read_pins(ROOT / "requirements-gpu-image.txt")
    download, build = device_wheels.read_wanted(ROOT / "device-wheels.txt")
    return py312, image, set(download) | set(build), set(build)


def test_every_device_wheel_has_a_pinned_version(files):
    py312, _, wheels, _ = files
    assert wheels - set(py312) == set()


def test_image_plus_wheels_is_the_py312_install(files):
    py312, image, wheels, _ = files
    assert set(py312) - set(image) <= wheels, (
        "a package of requirements-py312.txt reaches neither image nor wheels"
    )
    assert wheels & set(image) == SHADOWED, (
        "only the transformers trio may shadow the image's own packages"
    )
    disagree = {
        n: (py312[n], image[n]) for n in set(py312) & set(image) - SHADOWED if py312[n] != image[n]
    }
    assert not disagree, (
        f"requirements-py312.txt and the image twin pin different versions: {disagree}"
    )
    assert image["transformers"].startswith("5.") and py312["transformers"].startswith("4.57.")


def test_the_image_twin_runs_the_gpu_image_jax():
    image = device_wheels.read_pins(ROOT / "requirements-gpu-image.txt")
    assert image["jax"] == image["jaxlib"] == "0.11.2"


def test_bad_lines_are_named(tmp_path):
    bad = tmp_path / "r.txt"
    bad.write_text("jax==0.11.2\nflax>=0.12\n")
    with pytest.raises(
        device_wheels.WheelError, match=r"r.txt:2: expected NAME==VERSION, got 'flax>=0.12'"
    ):
        device_wheels.read_pins(bad)
