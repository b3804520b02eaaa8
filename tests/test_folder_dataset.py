"""Your own categories (ddjax/data/folder.py): a folder of class subfolders of meshes in several
formats (written at test time by trimesh from procedural meshes) and point clouds, built into
folder/NAME and evaluated by name. Meshes are checked against the mesh itself (every stored point on
its surface, samples equal in distribution to trimesh's own), point clouds against numpy's
brute-force FPS (tests/references.py)."""

import json
import pathlib

import numpy as np
import pytest
import trimesh
from scipy import stats

import main
from configs import zeroshot as zeroshot_config
from ddjax.data import folder, prepare
from tests import references
from tests.test_meshes import write

POINTS = 256  # kept per example in these tests

SHAPES = {  # class folder -> a procedural mesh of it, at scale s
    "sphere": lambda s: trimesh.creation.icosphere(subdivisions=2, radius=s),
    "cube": lambda s: trimesh.creation.box(extents=(s, s, s)),
    "cylinder": lambda s: trimesh.creation.cylinder(radius=0.5 * s, height=2 * s, sections=16),
}
FORMATS = {  # class folder -> the mesh formats of its files (one file each)
    "sphere": ("glb", "stl", "gltf"),
    "cube": ("obj", "ply", "off"),
    "cylinder": ("stl_ascii", "ply_ascii", "glb"),
}


def make_folder(root: pathlib.Path, classes=SHAPES) -> dict[str, tuple]:
    """root/<class>/ holding a mesh per format of FORMATS (a glTF in a folder of its own, with its
    buffers; an OBJ with its material library) and a point cloud (.npy, more points than POINTS)
    per class, plus files ddjax skips (a hidden file, a note). Returns the example id (the path
    relative to root) -> ("mesh", trimesh.Trimesh) or ("cloud", f32[N, 3])."""
    expected = {}
    for c in classes:
        for i, fmt in enumerate(FORMATS[c]):
            mesh = SHAPES[c](1.0 + 0.25 * i)
            folder_of = root / c / f"g{i}" if fmt == "gltf" else root / c
            if fmt == "off":
                folder_of.mkdir(parents=True, exist_ok=True)
                path = folder_of / f"m{i}.off"
                path.write_text(mesh.export(file_type="off"))
            else:
                path = write(trimesh.Scene(mesh), folder_of, f"m{i}", fmt)
            expected[path.relative_to(root).as_posix()] = ("mesh", mesh)
        cloud = SHAPES[c](1.0).sample(300 + 10 * len(c), seed=len(c)).astype(np.float32)
        np.save(root / c / "cloud.npy", cloud)
        expected[f"{c}/cloud.npy"] = ("cloud", cloud)
        (root / c / ".hidden.ply").write_text("not read")
        (root / c / "notes.md").write_text("not read either")
    return expected


def on_surface(points: np.ndarray, mesh: trimesh.Trimesh, tol: float = 1e-5) -> np.ndarray:
    """bool[P]: each point lies on one of the mesh's triangles (in its plane, within tol, with
    barycentric coordinates >= -tol), by brute force over every triangle."""
    a, b, c = (mesh.triangles[:, i][None] for i in range(3))  # (1, T, 3) each
    p = points.astype(np.float64)[:, None]  # (P, 1, 3)
    normal = np.cross(b - a, c - a)  # (1, T, 3)
    area2 = np.linalg.norm(normal, axis=-1)  # twice each triangle's area
    off_plane = np.abs(((p - a) * normal).sum(-1)) / area2  # (P, T)
    # barycentric coordinates of the point's projection: sub-triangle areas over the whole
    u = (np.cross(c - b, p - b) * normal).sum(-1) / area2**2
    v = (np.cross(a - c, p - c) * normal).sum(-1) / area2**2
    w = 1 - u - v
    inside = (u >= -tol) & (v >= -tol) & (w >= -tol)
    return (inside & (off_plane < tol)).any(axis=1)


def check_example(record: dict, kind: str, source) -> None:
    points = np.asarray(record["points"])
    assert points.shape == (POINTS, 3) and points.dtype == np.float32
    if kind == "cloud":  # FPS from index 0, as numpy's brute force picks
        np.testing.assert_array_equal(points, source[references.fps(source, POINTS)])
        return
    # on the mesh's surface, and distributed as trimesh's own area-weighted samples
    assert on_surface(points, source).all() and not on_surface(1.01 * points, source).any()
    reference = source.sample(4000, seed=1)
    for axis in range(3):
        assert stats.ks_2samp(points[:, axis], reference[:, axis]).pvalue > 1e-3, axis


def test_a_folder_builds_into_what_its_files_hold(tmp_path):
    expected = make_folder(tmp_path / "my shapes")
    builder = prepare.prepare(
        "folder/mine", tmp_path / "tfds", tmp_path / "my shapes", points=POINTS
    )
    assert list(builder.info.splits) == ["test"]  # no split folders: everything is test
    names = builder.info.features["label"].names
    assert names == sorted(SHAPES)  # the class folders, sorted
    assert list(builder.info.metadata["class_texts"]) == names
    source = builder.as_data_source("test")
    records = {r["id"].decode(): r for r in (source[i] for i in range(len(source)))}
    assert sorted(records) == sorted(expected)  # hidden files and other types skipped
    for file_id, record in records.items():
        assert names[record["label"]] == file_id.split("/")[0], file_id
        check_example(record, *expected[file_id])
    # opened by name, without the folder; the same data from a second build (seeded sampling)
    again = prepare.open_dataset("folder/mine", tmp_path / "tfds")
    assert again.info.features["label"].names == names
    other = prepare.prepare(
        "folder/mine", tmp_path / "tfds2", tmp_path / "my shapes", points=POINTS
    )
    copy = other.as_data_source("test")
    for i in range(len(source)):
        np.testing.assert_array_equal(copy[i]["points"], source[i]["points"])
    # preparing again does nothing; another number of points is another build, refused
    assert prepare.prepare("folder/mine", tmp_path / "tfds", tmp_path / "my shapes", points=POINTS)
    with pytest.raises(prepare.builders.DataError, match="already built with 256 points"):
        prepare.prepare("folder/mine", tmp_path / "tfds", tmp_path / "my shapes", points=300)


def test_split_folders_and_classes_txt(tmp_path):
    root = tmp_path / "scans"
    make_folder(root / "train")
    make_folder(root / "test", classes=("sphere", "cube"))  # cylinder: training examples only
    (root / "classes.txt").write_text(
        "# label order and prompts\ncylinder: a tall cylinder\n\nsphere\ncube: a cube box\n"
    )
    builder = prepare.prepare("folder/scans", tmp_path / "tfds", root, points=POINTS)
    assert builder.info.features["label"].names == ["cylinder", "sphere", "cube"]
    assert list(builder.info.metadata["class_texts"]) == ["a tall cylinder", "sphere", "a cube box"]
    assert {s: i.num_examples for s, i in builder.info.splits.items()} == {"train": 12, "test": 8}
    test = builder.as_data_source("test")
    labels = {test[i]["id"].decode(): test[i]["label"] for i in range(len(test))}
    assert all(["cylinder", "sphere", "cube"][lab] == i.split("/")[1] for i, lab in labels.items())
    assert all(i.startswith("test/") for i in labels)


def test_folder_names_become_prompts_with_spaces(tmp_path):
    root = tmp_path / "d"
    for c in ("coffee_cup", "night_stand"):
        (root / c).mkdir(parents=True)
        np.save(root / c / "a.npy", SHAPES["cube"](1.0).sample(POINTS, seed=0).astype(np.float32))
    builder = prepare.prepare("folder/d", tmp_path / "tfds", root, points=POINTS)
    assert list(builder.info.metadata["class_texts"]) == ["coffee cup", "night stand"]
    assert folder.default_name(tmp_path / "my shapes!") == "my_shapes_"


def test_padded_fps_picks_what_fps_of_the_cloud_picks():
    rng = np.random.default_rng(0)
    for n in (257, 300, 512, 1000):  # padded to 512, 512, 512, 1024
        cloud = rng.normal(size=(n, 3)).astype(np.float32)
        cloud[5] = cloud[0]  # a duplicate of the first point: still picked as the unpadded FPS does
        np.testing.assert_array_equal(
            folder.farthest_points(cloud, 256), cloud[references.fps(cloud, 256)]
        )


def test_evaluation_jobs_take_a_folder_dataset_by_name(run_dir, tmp_path, capsys):
    """Prepared by main.py's prepare job, then zero-shot, attack, certify and classify on it by
    name (the tiny run, at its own tokenization)."""
    make_folder(tmp_path / "mine")
    data_dir = tmp_path / "tfds"
    common = [f"--config.checkpoint={run_dir}", f"--config.data_dir={data_dir}"]
    assert (
        main.run_command(
            [
                "--config=configs/prepare.py:folder",
                f"--config.manual_dir={tmp_path / 'mine'}",
                f"--config.data_dir={data_dir}",
                f"--config.points={POINTS}",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "prepared folder/mine" in out and "configs/zeroshot.py:folder/mine" in out
    # the glTF buffers, the OBJ's materials and the notes; not the hidden files
    assert "folder/mine: skipped 6 files of other types (.bin 2, .md 3, .mtl 1)" in out, out
    config = zeroshot_config.get_config("folder/mine")
    assert (config.dataset, config.npoints, config.num_groups, config.ratio, config.t) == (
        "folder/mine",
        1024,
        0,
        0.25,
        600,
    )
    small = ["--config.npoints=128", "--config.point_all=150"]
    assert (
        main.run_command(
            [
                "--config=configs/zeroshot.py:folder/mine",
                *common,
                *small,
                "--config.num_paths=2",
                f"--workdir={tmp_path / 'zs'}",
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "zs" / "zeroshot.json").read_text())
    assert result["num_samples"] == 12 and result["class_names"] == ["cube", "cylinder", "sphere"]
    # every class has 4 test files: top-1 is the mean of the per-class accuracies
    assert len(result["per_class"]) == 3
    assert result["top1"] == pytest.approx(np.mean(result["per_class"]))
    assert (
        main.run_command(
            [
                "--config=configs/attack.py:folder/mine",
                *common,
                *small,
                "--config.settings=1:0",
                "--config.attacks=pgd",
                "--config.modes=paper",
                "--config.eps=0.05",
                "--config.steps=2",
                "--config.curve_every=1",
                "--config.seeds=1",
                "--config.batch_size=12",
                f"--workdir={tmp_path / 'attack'}",
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "attack" / "attack.json").read_text())
    assert report["num_samples"] == 12 and report["dataset"] == "folder/mine"
    assert (
        main.run_command(
            [
                "--config=configs/certify.py:folder/mine",
                *common,
                *small,
                "--config.t_values=900",
                "--config.n0=10",
                "--config.n=100",
                "--config.max_shapes=4",
                "--config.skip=3",
                "--config.draws_per_step=50",
                f"--workdir={tmp_path / 'certify'}",
            ]
        )
        == 0
    )
    certified = json.loads((tmp_path / "certify" / "certify.json").read_text())
    assert certified["dataset"] == "folder/mine"
    capsys.readouterr()
    assert (
        main.run_command(
            [
                "--config=configs/classify.py",
                *common,
                "--config.dataset=folder/mine",
                f"--config.input={tmp_path / 'mine' / 'sphere' / 'm0.glb'}",
                "--config.num_paths=2",
            ]
        )
        == 0
    )
    ranking = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ranking"]
    assert sorted(r["label"] for r in ranking) == ["cube", "cylinder", "sphere"]
