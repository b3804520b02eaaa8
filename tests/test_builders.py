"""tfds builders on data in the real on-disk formats: built, read back, checked; malformed files
named."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from ddjax import errors
from ddjax.data import builders, pipelines, prepare
from tests import references as ref
from tests.conftest import MODELNET_DIR


def _write_png(path, color=(200, 30, 10)):
    Image.fromarray(np.full((8, 8, 3), color, np.uint8)).save(path)


# ----------------------------------------------------------------------------------------------
# ModelNet


def test_modelnet_builds_from_the_real_files(modelnet_prepared):
    for name, builder in modelnet_prepared.items():
        prefix = name
        names = (MODELNET_DIR / f"{prefix}_shape_names.txt").read_text().split()
        assert builder.info.features["label"].names == names
        for split in ("train", "test"):
            ids = (MODELNET_DIR / f"{prefix}_{split}.txt").read_text().split()
            source = builder.as_data_source(split)
            assert len(source) == len(ids)
            assert [source[i]["id"].decode() for i in range(len(source))] == ids  # file order kept
    source = modelnet_prepared["modelnet40"].as_data_source("test")
    for i in (0, len(source) - 1):
        ex = source[i]
        shape_id = ex["id"].decode()
        cls = shape_id.rsplit("_", 1)[0]
        raw = np.loadtxt(MODELNET_DIR / cls / f"{shape_id}.txt", delimiter=",", dtype=np.float32)
        assert ex["points"].shape == (8192, 3) and ex["normals"].shape == (8192, 3)
        assert ex["label"] == modelnet_prepared["modelnet40"].info.features["label"].names.index(
            cls
        )
        # deterministic FPS from index 0 (spot-check the first 50)
        idx = ref.fps(raw[:, :3], 8192)[:50]
        np.testing.assert_array_equal(ex["points"][:50], raw[idx, :3])
        np.testing.assert_array_equal(ex["normals"][:50], raw[idx, 3:])
        # The evaluation pipeline normalises to the unit ball.
        norm = pipelines.EvalTransform(normalize=True).map(ex)["points"]
        np.testing.assert_allclose(norm.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(norm, axis=1).max(), 1.0, rtol=1e-5)


def test_modelnet40_10k_keeps_every_point_and_feeds_each_model_its_input(
    modelnet_prepared, tmp_path
):
    """modelnet40_10k holds all 10,000 rows of each shape in file order. ULIP-2 and Uni3D read them
    as stored (`point_all` 0); at 8192 (ULIP) FPS from the first point gives modelnet40's stored
    clouds; Dual Denoising's and ReCon's FPS 1200 -> random 1024 gives the same points from both
    datasets (FPS from index 0 keeps its first points); more points than stored is one line."""
    full = prepare.prepare("modelnet40_10k", tmp_path, MODELNET_DIR)
    source, fps8192 = full.as_data_source("test"), modelnet_prepared["modelnet40"]
    ex = source[0]
    shape_id = ex["id"].decode()
    raw = np.loadtxt(
        MODELNET_DIR / shape_id.rsplit("_", 1)[0] / f"{shape_id}.txt",
        delimiter=",",
        dtype=np.float32,
    )
    np.testing.assert_array_equal(ex["points"], raw[:, :3])
    np.testing.assert_array_equal(ex["normals"], raw[:, 3:])

    def first_batch(data, **kw):
        batches = pipelines.zeroshot_batches(data, batch_size=4, normalize=False, **kw)
        return np.asarray(next(batches)["points"])

    test8192 = fps8192.as_data_source("test")
    as_stored = first_batch(source, npoints=10000, point_all=0)
    np.testing.assert_array_equal(as_stored[0], raw[:, :3])
    ulip = first_batch(source, npoints=8192, point_all=0)
    np.testing.assert_array_equal(ulip, np.stack([test8192[i]["points"] for i in range(4)]))
    np.testing.assert_array_equal(
        first_batch(source, npoints=1024, point_all=1200),
        first_batch(test8192, npoints=1024, point_all=1200),
    )
    with pytest.raises(errors.ConfigError, match="the model reads 10001 points per cloud"):
        first_batch(source, npoints=10001, point_all=0)


@pytest.fixture
def tiny_modelnet(tmp_path):
    """A ModelNet folder in the official layout with two classes and three shapes."""
    root = tmp_path / "modelnet40_normal_resampled"
    rng = np.random.default_rng(0)
    (root / "chair").mkdir(parents=True)
    (root / "table").mkdir()
    names = ["chair", "table"] + [f"c{i}" for i in range(38)]
    (root / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    (root / "modelnet40_train.txt").write_text("chair_0001\ntable_0001\n")
    (root / "modelnet40_test.txt").write_text("chair_0002\n")
    for shape in ("chair_0001", "table_0001", "chair_0002"):
        data = np.concatenate([rng.normal(size=(8300, 3)), np.tile([0, 0, 1.0], (8300, 1))], axis=1)
        np.savetxt(root / shape.split("_")[0] / f"{shape}.txt", data, delimiter=",", fmt="%.6f")
    return root


def test_modelnet_malformed_inputs_are_named(tiny_modelnet, tmp_path):
    data_dir = tmp_path / "out"
    (tiny_modelnet / "chair" / "chair_0002.txt").unlink()
    with pytest.raises(
        builders.DataError, match=r"chair_0002\.txt\): missing file; it comes from .*PointNet\+\+"
    ):
        prepare.prepare("modelnet40", data_dir / "a", tiny_modelnet)
    (tiny_modelnet / "modelnet40_test.txt").write_text("sofa_0001\n")
    with pytest.raises(
        builders.DataError, match=r"modelnet40_test\.txt:1\): shape 'sofa_0001' has class 'sofa'"
    ):
        prepare.prepare("modelnet40", data_dir / "b", tiny_modelnet)
    (tiny_modelnet / "modelnet40_test.txt").write_text("chair_0001\n")
    with open(tiny_modelnet / "chair" / "chair_0001.txt", "a") as f:
        f.write("1,2,3\n")
    with pytest.raises(
        ValueError, match=r"chair_0001\.txt:8301\): expected 6 comma-separated values"
    ):
        prepare.prepare("modelnet40", data_dir / "c", tiny_modelnet)
    with pytest.raises(errors.ConfigError, match=r"config\.manual_dir\): .* does not exist"):
        prepare.prepare("modelnet40", data_dir / "d", tmp_path / "nowhere")
    with pytest.raises(
        builders.DataError, match=r"is not prepared in .*configs/prepare.py:modelnet40"
    ):
        prepare.open_dataset("modelnet40", data_dir / "e")
    with pytest.raises(ValueError, match=r"unknown dataset 'modelnet41'"):
        prepare.get_builder("modelnet41", data_dir)


def test_modelnet_too_few_points(tiny_modelnet, tmp_path):
    data = np.ones((100, 6))
    np.savetxt(tiny_modelnet / "chair" / "chair_0002.txt", data, delimiter=",")
    with pytest.raises(
        builders.DataError, match=r"chair_0002\.txt\): 100 points, fewer than the 8192"
    ):
        prepare.prepare("modelnet40", tmp_path / "out", tiny_modelnet)


def test_modelnet_rebuild_refuse_and_leftovers(tiny_modelnet, tmp_path, capsys):
    """A build records its manual folder's files: the same files again do nothing, different files
    are refused (nothing changed) unless rebuild, which replaces the build; a killed build's
    incomplete.* folder goes on the next build; a repeated shape is named by line."""
    import shutil

    data_dir = tmp_path / "out"
    capsys.readouterr()
    builder = prepare.prepare("modelnet40", data_dir, tiny_modelnet)
    # ddjax's progress lines, not tfds's own ("Dataset ... downloaded and prepared ...")
    out = capsys.readouterr().out
    assert "prepare modelnet40 train" in out and "Dataset" not in out, out
    version_dir = builder.data_dir
    record = json.loads(
        (tiny_modelnet.parent / "out/modelnet40/1.0.0" / prepare.SOURCE_RECORD).read_text()
    )
    assert record["files"] == 6 and record["manual_dir"] == str(tiny_modelnet.resolve())
    stamp = sorted(
        (p.name, p.stat().st_mtime_ns)
        for p in (tiny_modelnet.parent / "out/modelnet40/1.0.0").iterdir()
    )
    prepare.prepare("modelnet40", data_dir, tiny_modelnet)  # same files: nothing rebuilt
    copy = tmp_path / "copy"
    shutil.copytree(tiny_modelnet, copy)
    prepare.prepare("modelnet40", data_dir, copy)  # the same files elsewhere: the same build
    (copy / "modelnet40_test.txt").write_text("chair_0002\nchair_0001\n")
    with pytest.raises(
        builders.DataError,
        match=r"1\.0\.0\): already built from .* \(6 files\), and .*copy holds "
        r"different files.*--config.rebuild=True",
    ):
        prepare.prepare("modelnet40", data_dir, copy)
    after = sorted(
        (p.name, p.stat().st_mtime_ns)
        for p in (tiny_modelnet.parent / "out/modelnet40/1.0.0").iterdir()
    )
    assert after == stamp  # refused: nothing changed
    leftover = tiny_modelnet.parent / "out/modelnet40/incomplete.ABC123_1.0.0"
    leftover.mkdir()
    rebuilt = prepare.prepare("modelnet40", data_dir, copy, rebuild=True)
    assert rebuilt.info.splits["test"].num_examples == 2 and not leftover.exists()
    assert (
        not (tiny_modelnet.parent / "out/modelnet40/replaced.1.0.0").exists()
        and version_dir == rebuilt.data_dir
    )
    (copy / "modelnet40_test.txt").write_text("chair_0002\n\nchair_0001\nchair_0002\n")
    with pytest.raises(
        builders.DataError,
        match=r"modelnet40_test\.txt:4\): 'chair_0002' is listed again \(first at "
        r"line 1\)",
    ):
        prepare.prepare("modelnet40", data_dir, copy, rebuild=True)
    # the old build kept
    assert prepare.open_dataset("modelnet40", data_dir).info.splits["test"].num_examples == 2
    assert sorted(p.name for p in (tiny_modelnet.parent / "out/modelnet40").iterdir()) == ["1.0.0"]


# ------------------------------------------------------------------------------------------
# ScanObjectNN


def _write_h5(path, data, label, keys=("data", "label")):
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if "data" in keys:
            f["data"] = data
        if "label" in keys:
            f["label"] = label
        f["mask"] = np.zeros(data.shape[:2])


@pytest.fixture
def tiny_scanobjectnn(tmp_path):
    root = tmp_path / "h5_files"
    rng = np.random.default_rng(1)
    for config, files in builders.SCANOBJECTNN_FILES.items():
        for split, rel in zip(("train", "test"), files):
            n = 3 if split == "train" else 2
            _write_h5(
                root / rel,
                rng.normal(size=(n, 2048, 3)).astype(np.float32) * 2,
                rng.integers(0, 15, size=(n, 1)),
            )
    return root


def test_scanobjectnn_builds_each_config(tiny_scanobjectnn, tmp_path):
    import h5py

    for config, (train_rel, test_rel) in builders.SCANOBJECTNN_FILES.items():
        builder = prepare.prepare(f"scanobjectnn/{config}", tmp_path / "out", tiny_scanobjectnn)
        source = builder.as_data_source("test")
        with h5py.File(tiny_scanobjectnn / test_rel) as f:
            data, label = np.asarray(f["data"]), np.asarray(f["label"]).ravel()
        assert len(source) == len(data)
        for i in range(len(data)):  # stored as read: no normalisation
            np.testing.assert_array_equal(source[i]["points"], data[i])
            assert source[i]["label"] == label[i]
        assert len(builder.as_data_source("train")) == 3


def test_scanobjectnn_malformed_inputs_are_named(tiny_scanobjectnn, tmp_path):
    path = tiny_scanobjectnn / "main_split_nobg" / "test_objectdataset.h5"
    _write_h5(path, np.zeros((2, 2048, 3), np.float32), None, keys=("data",))
    with pytest.raises(builders.DataError, match=r"test_objectdataset\.h5\): no key 'label'"):
        prepare.prepare("scanobjectnn/obj_only", tmp_path / "a", tiny_scanobjectnn)
    _write_h5(path, np.zeros((2, 1024, 3), np.float32), np.zeros(2))
    with pytest.raises(
        builders.DataError, match=r"key 'data' has shape \(2, 1024, 3\), expected \(M, 2048, 3\)"
    ):
        prepare.prepare("scanobjectnn/obj_only", tmp_path / "b", tiny_scanobjectnn)
    _write_h5(path, np.zeros((2, 2048, 3), np.float32), np.array([0, 15]))
    with pytest.raises(
        builders.DataError, match=r"key 'label' entry 1 is 15, not a class in \[0, 15\)"
    ):
        prepare.prepare("scanobjectnn/obj_only", tmp_path / "c", tiny_scanobjectnn)
    path.write_bytes(b"not hdf5")
    with pytest.raises(
        builders.DataError, match=r"test_objectdataset\.h5\): not a readable HDF5 file"
    ):
        prepare.prepare("scanobjectnn/obj_only", tmp_path / "d", tiny_scanobjectnn)
    path.unlink()
    with pytest.raises(
        builders.DataError,
        match=r"test_objectdataset\.h5\): missing file; it comes from .*ScanObjectNN",
    ):
        prepare.prepare("scanobjectnn/obj_only", tmp_path / "e", tiny_scanobjectnn)


# --------------------------------------------------------------------------------------------
# ShapeNet-55


@pytest.fixture
def tiny_shapenet(tmp_path):
    root = tmp_path / "ShapeNet55"
    for sub in ("shapenet_pc", "shapenet_img", "ShapeNet-55"):
        (root / sub).mkdir(parents=True)
    # integers, as pandas stores them (leading zero lost)
    synsets = [2691156 + i for i in range(55)]
    table = {
        "catalogue": {str(i): s for i, s in enumerate(synsets)},
        "describe": {str(i): f"category {i}" for i in range(55)},
    }
    (root / "shapenet55.json").write_text(json.dumps(table))
    rng = np.random.default_rng(2)
    names = {"train": ["02691156-aaa", "02691157-bbb"], "test": ["02691160-ccc"]}
    for split, stems in names.items():
        (root / "ShapeNet-55" / f"{split}.txt").write_text("".join(f"{s}.npy\n" for s in stems))
        for s in stems:
            np.save(
                root / "shapenet_pc" / f"{s}.npy", rng.normal(size=(8192, 3)).astype(np.float32)
            )
            _write_png(root / "shapenet_img" / f"{s}.png")
    return root


def test_shapenet_builds_with_images_and_texts(tiny_shapenet, tmp_path):
    builder = prepare.prepare("shapenet55", tmp_path / "out", tiny_shapenet)
    train = builder.as_data_source("train")
    assert len(train) == 2 and len(builder.as_data_source("test")) == 1
    ex = train[1]
    assert ex["id"].decode() == "02691157-bbb"
    assert ex["label"] == 1 and ex["text"].decode() == "category 1"
    np.testing.assert_array_equal(
        ex["points"], np.load(tiny_shapenet / "shapenet_pc" / "02691157-bbb.npy")
    )
    png = Image.open(io.BytesIO(ex["image"]))
    assert png.format == "PNG" and np.asarray(png)[0, 0].tolist() == [200, 30, 10]
    assert builder.info.metadata["class_texts"][1] == "category 1"


def test_shapenet_malformed_inputs_are_named(tiny_shapenet, tmp_path):
    pc = tiny_shapenet / "shapenet_pc" / "02691160-ccc.npy"
    np.save(pc, np.zeros((100, 3), np.float32))
    with pytest.raises(
        builders.DataError,
        match=r"02691160-ccc\.npy\): shape \(100, 3\) and dtype float\d+, expected \(8192, 3\)",
    ):
        prepare.prepare("shapenet55", tmp_path / "a", tiny_shapenet)
    np.save(pc, np.array([{"not": "an array"}], dtype=object), allow_pickle=True)  # never unpickled
    with pytest.raises(builders.DataError, match=r"02691160-ccc\.npy\): not a plain \.npy array"):
        prepare.prepare("shapenet55", tmp_path / "b", tiny_shapenet)
    np.save(pc, np.zeros((8192, 3), np.float32))
    (tiny_shapenet / "shapenet_img" / "02691160-ccc.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(builders.DataError, match=r"02691160-ccc\.png\): not a readable PNG"):
        prepare.prepare("shapenet55", tmp_path / "c", tiny_shapenet)
    (tiny_shapenet / "shapenet_img" / "02691160-ccc.png").unlink()
    with pytest.raises(builders.DataError, match=r"02691160-ccc\.png\): missing file"):
        prepare.prepare("shapenet55", tmp_path / "d", tiny_shapenet)
    (tiny_shapenet / "ShapeNet-55" / "test.txt").write_text("09999999-zzz.npy\n")
    with pytest.raises(
        builders.DataError, match=r"test\.txt:1\): synset '09999999' .* not in shapenet55\.json"
    ):
        prepare.prepare("shapenet55", tmp_path / "e", tiny_shapenet)
    (tiny_shapenet / "shapenet55.json").write_text("{broken")
    with pytest.raises(builders.DataError, match=r"shapenet55\.json\): not valid JSON"):
        prepare.prepare("shapenet55", tmp_path / "f", tiny_shapenet)


def test_shapenet_categories_as_records(tmp_path):
    path = tmp_path / "shapenet55.json"
    path.write_text(json.dumps([{"catalogue": 4379243, "describe": "table"}]))
    assert builders.read_shapenet_categories(path) == [("04379243", "table")]


# --------------------------------------------------------------------------------------------
# synthetic


def test_synthetic_shapes_build_without_downloads(synthetic_tiny):
    from ddjax.data import synthetic

    train, test = synthetic_tiny.as_data_source("train"), synthetic_tiny.as_data_source("test")
    k = len(synthetic.CLASSES)
    assert len(train) == 4 * k and len(test) == 2 * k
    labels = [train[i]["label"] for i in range(len(train))]
    assert sorted(set(labels)) == list(range(k))
    ex = test[0]
    expected = synthetic.make_example(int(ex["label"]), 0, int(ex["id"].decode().rsplit("_", 1)[1]))
    assert ex["id"].decode() == expected["id"]
    np.testing.assert_array_equal(ex["points"], expected["points"])  # deterministic generation
    np.testing.assert_array_equal(
        np.asarray(Image.open(io.BytesIO(ex["image"]))), expected["image"]
    )
    assert ex["text"].decode() == expected["text"]
    assert not (
        {test[i]["id"] for i in range(len(test))} & {train[i]["id"] for i in range(len(train))}
    )
