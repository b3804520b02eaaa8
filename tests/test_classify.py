"""Point/mesh file readers against known contents, and the classify job on real meshes and bad
files."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import main
from ddjax import evaluation
from ddjax.data import readers
from ddjax.jobs import classify
from tests.conftest import reference_path

CUBE_V = np.array(
    [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 1, 1]], float
)
# quads
CUBE_F = [[0, 3, 2, 1], [4, 5, 6, 7], [0, 1, 5, 4], [2, 3, 7, 6], [1, 2, 6, 5], [0, 4, 7, 3]]


def _write_formats(tmp_path):
    off = (
        "OFF\n8 6 0\n"
        + "".join(f"{x} {y} {z}\n" for x, y, z in CUBE_V)
        + "".join("4 " + " ".join(map(str, f)) + "\n" for f in CUBE_F)
    )
    (tmp_path / "cube.off").write_text(off)
    (tmp_path / "glued.off").write_text("OFF8 6 0\n" + off.split("\n", 2)[2])  # ModelNet's quirk
    (tmp_path / "cube.obj").write_text(
        "".join(f"v {x} {y} {z}\n" for x, y, z in CUBE_V)
        + "".join("f " + " ".join(f"{i + 1}/1" for i in f) + "\n" for f in CUBE_F)
    )
    header = (
        "ply\nformat {}\nelement vertex 8\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 6\nproperty list uchar int vertex_indices\nend_header\n"
    )
    (tmp_path / "ascii.ply").write_text(
        header.format("ascii 1.0")
        + "".join(f"{x} {y} {z}\n" for x, y, z in CUBE_V)
        + "".join("4 " + " ".join(map(str, f)) + "\n" for f in CUBE_F)
    )
    body = CUBE_V.astype("<f4").tobytes() + b"".join(
        np.uint8(4).tobytes() + np.asarray(f, "<i4").tobytes() for f in CUBE_F
    )
    (tmp_path / "binary.ply").write_bytes(header.format("binary_little_endian 1.0").encode() + body)
    return ["cube.off", "glued.off", "cube.obj", "ascii.ply", "binary.ply"]


def test_mesh_formats_read_the_same_cube(tmp_path):
    for name in _write_formats(tmp_path):
        vertices, faces = readers.read_points_file(tmp_path / name)
        np.testing.assert_allclose(vertices, CUBE_V, err_msg=name)
        assert faces.shape == (12, 3), name  # 6 quads -> 12 triangles
        pts = readers.sample_surface(vertices, faces, 2000, np.random.default_rng(0))
        on_face = np.isclose(pts, 0, atol=1e-6) | np.isclose(pts, 1, atol=1e-6)
        assert on_face.any(axis=1).all(), name  # every sample on the cube's surface
        # area-weighted: 1/6 per face
        assert abs(np.isclose(pts[:, 2], 1, atol=1e-6).mean() - 1 / 6) < 0.05


def test_point_formats(tmp_path):
    pts = np.random.default_rng(0).normal(size=(50, 3))
    np.save(tmp_path / "a.npy", np.concatenate([pts, np.ones((50, 3))], 1))
    np.savetxt(tmp_path / "a.xyz", pts)
    np.savetxt(tmp_path / "a.txt", pts, delimiter=",")
    for name in ("a.npy", "a.xyz", "a.txt"):
        vertices, faces = readers.read_points_file(tmp_path / name)
        assert faces is None
        np.testing.assert_allclose(vertices, pts, rtol=1e-6, err_msg=name)


ROOT = pathlib.Path(__file__).resolve().parents[1]


def _classify(run_dir, path, labels="chair,table,sofa"):
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    return subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/classify.py",
            f"--config.checkpoint={run_dir}",
            f"--config.input={path}",
            f"--config.labels={labels}",
            "--config.num_paths=2",
            "--config.npoints=256",
            "--config.point_all=300",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.reference_data
def test_classify_real_meshes_and_bad_files(run_dir, tmp_path):
    meshes = sorted(reference_path("meshes").glob("*/*/*/*.off"))
    for mesh in meshes:  # all 8 real meshes, raw ModelNet units, 'OFF' quirks included
        vertices, faces = readers.read_points_file(mesh)
        assert faces is not None and len(vertices) > 3 and faces.max() < len(vertices), mesh
    proc = _classify(run_dir, meshes[0])
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])  # the last line is JSON
    assert sorted(r["label"] for r in result["ranking"]) == ["chair", "sofa", "table"]
    scores = [r["score"] for r in result["ranking"]]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    (tmp_path / "few.xyz").write_text("0 0 0\n1 1 1\n")
    for bad, message in [
        (tmp_path / "few.xyz", "fewer than the 16 the tokenizer needs"),
        (tmp_path / "missing.off", "does not exist"),
    ]:
        proc = _classify(run_dir, bad)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr and message in proc.stderr, proc.stderr[-2000:]
        assert str(bad) in proc.stderr


def _classified(capsys, argv: list[str]) -> list[dict]:
    """The classify job run in-process with `argv` (exit 0 asserted): its JSON result lines."""
    capsys.readouterr()
    assert main.run_command(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


def test_many_files_in_one_call_rank_as_single_calls(run_dir, tmp_path, capsys):
    """Three files (a list and a glob) in one call give the rankings of three single calls; the
    labels' text features are cached in the run folder and reused (no teacher needed: its folder is
    gone)."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    # other tests' label lists may be cached already
    cached_before = set(run.glob("classify_text_*.npy"))
    rng = np.random.default_rng(5)
    (tmp_path / "in").mkdir()
    # different sizes; extra columns ignored
    for i, shape in enumerate([(300, 3), (900, 3), (500, 4)]):
        np.save(tmp_path / "in" / f"cloud{i}.npy", rng.normal(size=shape) * (1 + i))
    args = [
        "--config=configs/classify.py",
        f"--config.checkpoint={run}",
        "--config.labels=chair,table,sofa,lamp",
        "--config.num_paths=2",
        "--config.npoints=256",
        "--config.point_all=300",
    ]

    def results(inputs: str) -> list[dict]:
        return _classified(capsys, [*args, f"--config.input={inputs}"])

    single = [results(str(tmp_path / "in" / f"cloud{i}.npy"))[0] for i in range(3)]
    # computed once, then cached
    assert len(set(run.glob("classify_text_*.npy")) - cached_before) == 1
    shutil.rmtree(run / "teacher")  # a cached label list needs no teacher
    together = results(f"{tmp_path / 'in' / 'cloud0.npy'},{tmp_path / 'in'}/cloud[12].npy")
    assert [r["file"] for r in together] == [r["file"] for r in single]
    for a, b in zip(single, together):
        assert [r["label"] for r in a["ranking"]] == [r["label"] for r in b["ranking"]]
        np.testing.assert_allclose(
            [r["score"] for r in a["ranking"]],
            [r["score"] for r in b["ranking"]],
            rtol=1e-5,
            atol=1e-6,
        )


def test_a_damaged_label_cache_is_computed_again(run_dir, tmp_path, capsys):
    """A cached label list of the wrong width (once a numpy error), of zeros or of the wrong
    count is not used: the teacher computes the features again, the ranking is the fresh one and
    the cache is written whole."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    np.save(tmp_path / "cloud.npy", np.random.default_rng(7).normal(size=(300, 3)))
    args = [
        "--config=configs/classify.py",
        f"--config.checkpoint={run}",
        "--config.labels=mug,bed,desk",
        f"--config.input={tmp_path / 'cloud.npy'}",
        "--config.npoints=256",
        "--config.point_all=300",
    ]

    def ranking() -> list:
        return _classified(capsys, args)[-1]["ranking"]

    before = set(run.glob("classify_text_*.npy"))  # other tests' label lists may be cached
    fresh = ranking()
    (cache,) = set(run.glob("classify_text_*.npy")) - before
    good = np.load(cache)
    dim = good.shape[1]
    for damaged in (np.ones((3, dim + 5), np.float32), np.zeros_like(good), good[:2]):
        np.save(cache, damaged)
        assert ranking() == fresh
        np.testing.assert_array_equal(np.load(cache), good)


def test_which_label_caches_are_used():
    good = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    assert evaluation.usable_label_cache(good, 3, 8)
    zero_row = good.copy()
    zero_row[1] = 0
    nan = good.copy()
    nan[0, 0] = np.nan
    for bad, labels, dim in [
        (good, 3, 16),  # another teacher's width
        (good, 4, 8),  # another label count
        (zero_row, 3, 8),
        (nan, 3, 8),
        (good.astype(np.int32), 3, 8),
        (good[None], 3, 8),
    ]:
        assert not evaluation.usable_label_cache(bad, labels, dim)


def test_a_file_name_with_a_comma(run_dir, tmp_path, capsys):
    """A comma in a file name (it once could not be passed): the whole text when it names a
    file, or escaped as '\\,' in a list; both rank the same cloud the same."""

    rng = np.random.default_rng(3)
    np.savetxt(tmp_path / "chair,1.xyz", rng.normal(size=(300, 3)))
    np.savetxt(tmp_path / "plain.xyz", rng.normal(size=(300, 3)))
    assert classify.split_inputs(f"{tmp_path}/chair,1.xyz") == [f"{tmp_path}/chair,1.xyz"]
    assert classify.split_inputs("a\\,b.xyz, c.xyz,") == ["a,b.xyz", "c.xyz", ""]
    base = [
        "--config=configs/classify.py",
        f"--config.checkpoint={run_dir}",
        "--config.labels=chair,table",
        "--config.npoints=256",
        "--config.point_all=300",
    ]

    def rankings(inputs: str) -> list[dict]:
        return _classified(capsys, [*base, f"--config.input={inputs}"])

    (whole,) = rankings(f"{tmp_path}/chair,1.xyz")
    listed = rankings(f"{tmp_path}/chair\\,1.xyz,{tmp_path}/plain.xyz")
    assert [r["file"] for r in listed] == [f"{tmp_path}/chair,1.xyz", f"{tmp_path}/plain.xyz"]
    assert listed[0]["ranking"] == whole["ranking"]
