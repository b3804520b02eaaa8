"""tensorflow-datasets builders for the datasets the paper uses, writing array_record (no
TensorFlow).

Each builder reads the official downloads from a manual directory, checks every file it reads, and
says exactly which file, line or key is missing or malformed and where the official files come from:

  modelnet40, modelnet10  the `modelnet40_normal_resampled` folder (per-shape txt, name and split
                          lists); 8192 of the 10,000 points per shape by FPS from index 0
                          (deterministic, where ReCon's pickled caches used a random start), with
                          their normals; stored raw.
  modelnet40_10k          the same folder, all 10,000 points of each shape in file order: the
                          input of ULIP-2 and Uni3D (10,000-point clouds, as stored).
  scanobjectnn            configs obj_only, obj_bg, pb_t50_rs: the official h5 files (keys data,
                          label).
  shapenet55              ReCon's layout: shapenet_pc/*.npy (8192 x 3), shapenet_img/*.png, split
                          lists ShapeNet-55/{train,test}.txt, shapenet55.json (category texts).
  synthetic_shapes        procedural shapes with renders and texts (ddjax/data/synthetic.py): no
                          download.

Images are stored as encoded PNG bytes (`Tensor(shape=(), dtype=object)`): `tfds.features.Image`
needs TensorFlow (spec D7). Read prepared data with `builder.as_data_source(split)`. Shuffling is
disabled, so records keep the order of the official lists. Prepare with `ddjax.data.prepare` (or
main.py's prepare job).
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib

import h5py
import jax
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from ddjax import errors, progress
from ddjax.data import classnames, readers, synthetic
from kernels import fps

MODELNET_POINTS = 8192
MODELNET_ALL_POINTS = 10000  # every shape of modelnet40_normal_resampled
SCANOBJECTNN_POINTS = 2048
SHAPENET_POINTS = 8192

MODELNET_SOURCE = (
    "the `modelnet40_normal_resampled` archive of the PointNet++ authors "
    "(modelnet40_normal_resampled.zip, linked from Point-BERT's and ReCon's DATASET.md)"
)
SCANOBJECTNN_SOURCE = (
    "the official ScanObjectNN h5 files (h5_files.zip, from the ScanObjectNN project page "
    "hkust-vgd.github.io/scanobjectnn, obtained through its terms-of-use form)"
)
SHAPENET_SOURCE = (
    "ShapeNet55-34 from Point-BERT's DATASET.md (shapenet_pc/*.npy and the ShapeNet-55 split "
    "lists) plus ReCon's rendered images and its modified lists and shapenet55.json "
    "(ReCon's DATASET.md)"
)


class DataError(errors.UserError):
    """A dataset file is missing or malformed: DataError(path[:line], why[, what to do])."""

    what = "cannot prepare the dataset"
    todo = (
        "fix or re-download that file (configs/prepare.py's docstring names each dataset's "
        "official files)"
    )


def _require_file(path: pathlib.Path, source: str) -> pathlib.Path:
    if not path.is_file():
        raise DataError(path, "missing file", f"it comes from {source}")
    return path


def _read_list(path: pathlib.Path, source: str) -> list[tuple[int, str]]:
    """(line number, stripped line) of the non-empty lines of a list file."""
    try:
        text = _require_file(path, source).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(
            path, f"not a text file (byte {e.start} is not UTF-8)", f"it comes from {source}"
        ) from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    if not lines:
        raise DataError(path, "empty file", f"it comes from {source}")
    return lines


def _check_unique(path: pathlib.Path, lines: list[tuple[int, str]]) -> None:
    """DataError naming the line of the first entry a list file repeats."""
    first = {}
    for line_no, name in lines:
        if name in first:
            raise DataError(
                f"{path}:{line_no}",
                f"{name!r} is listed again (first at line {first[name]})",
                "each shape may appear once; fix the list or re-download it",
            )
        first[name] = line_no


def _png_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return buf.getvalue()


def _check_png(path: pathlib.Path) -> bytes:
    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format != "PNG":
                raise DataError(path, f"a {img.format} file, not a PNG")
            img.verify()
    except DataError:
        raise
    except Exception as e:
        raise DataError(path, f"not a readable PNG image ({errors.one_line(e)})") from None
    return data


def _point_features(num_points: int, normals: bool = False) -> dict:
    feats = {"points": tfds.features.Tensor(shape=(num_points, 3), dtype=np.float32)}
    if normals:
        feats["normals"] = tfds.features.Tensor(shape=(num_points, 3), dtype=np.float32)
    return feats


def _fps_subsample(clouds: list[np.ndarray], num_samples: int) -> list[np.ndarray]:
    """FPS indices (start 0) for clouds of equal size, batched on the JAX default device."""
    batch = np.stack(clouds)[..., :3]  # (B, N, 3)
    idx = np.asarray(jax.jit(lambda p: fps(p, num_samples))(batch))  # (B, S)
    return [c[i] for c, i in zip(clouds, idx)]


# ------------------------------------------------------------------------------------------------
# ModelNet40 / ModelNet10


class Modelnet40(tfds.core.GeneratorBasedBuilder):
    """ModelNet40 from the official `modelnet40_normal_resampled` folder (the PointNet++ resampled
    shapes)."""

    VERSION = tfds.core.Version("1.0.0")
    NUM_CLASSES = 40
    NUM_POINTS = MODELNET_POINTS  # kept per shape: FPS from index 0, or ...
    ALL_POINTS = False  # ... True: the file's rows as they are (exactly NUM_POINTS of them)
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Extract {MODELNET_SOURCE} and pass its folder `modelnet40_normal_resampled` (holding "
        "<class>/<class>_NNNN.txt, modelnet40_shape_names.txt, modelnet40_{train,test}.txt and, "
        "for "
        "ModelNet10, modelnet10_shape_names.txt and modelnet10_{train,test}.txt) as the manual "
        "directory."
    )

    @property
    def _prefix(self) -> str:  # the names of the list files
        return f"modelnet{self.NUM_CLASSES}"

    def _class_names(self) -> list[str]:
        manual = pathlib.Path(self._manual_dir)
        return [
            name
            for _, name in _read_list(manual / f"{self._prefix}_shape_names.txt", MODELNET_SOURCE)
        ]

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            disable_shuffling=True,
            features=tfds.features.FeaturesDict(
                {
                    **_point_features(self.NUM_POINTS, normals=True),
                    "label": tfds.features.ClassLabel(num_classes=self.NUM_CLASSES),
                    "id": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        self._manual_dir = dl_manager.manual_dir
        names = self._class_names()
        if len(names) != self.NUM_CLASSES:
            raise DataError(
                f"{self._manual_dir}/{self._prefix}_shape_names.txt",
                f"lists {len(names)} classes, expected {self.NUM_CLASSES}",
            )
        self.info.features["label"].names = names
        return {split: self._generate_examples(split, names) for split in ("train", "test")}

    def _generate_examples(self, split: str, names: list[str]):
        manual = pathlib.Path(self._manual_dir)
        ids = _read_list(manual / f"{self._prefix}_{split}.txt", MODELNET_SOURCE)
        label_of = {name: i for i, name in enumerate(names)}
        _check_unique(manual / f"{self._prefix}_{split}.txt", ids)
        chunk: list[tuple[str, int, np.ndarray]] = []

        def flush():
            sizes = {len(c[2]) for c in chunk}
            groups = [[c for c in chunk if len(c[2]) == n] for n in sorted(sizes)]
            for group in groups:
                clouds = [g[2] for g in group]
                sampled = clouds if self.ALL_POINTS else _fps_subsample(clouds, self.NUM_POINTS)
                for (shape_id, label, _), data in zip(group, sampled):
                    yield (
                        shape_id,
                        {
                            "points": data[:, :3],
                            "normals": data[:, 3:],
                            "label": label,
                            "id": shape_id,
                        },
                    )
            chunk.clear()

        for line_no, shape_id in progress.bar(
            ids, total=len(ids), desc=f"prepare {self.name} {split}", unit="shape"
        ):
            cls = shape_id.rsplit("_", 1)[0]
            if cls not in label_of:
                raise DataError(
                    f"{manual}/{self._prefix}_{split}.txt:{line_no}",
                    f"shape {shape_id!r} has class "
                    f"{cls!r}, which is not in {self._prefix}_shape_names.txt",
                )
            path = _require_file(manual / cls / f"{shape_id}.txt", MODELNET_SOURCE)
            try:
                data = readers.read_modelnet_txt(path)  # (N, 6), checked
            except readers.PointFileError as e:
                raise DataError(e.where, e.why, f"it comes from {MODELNET_SOURCE}") from None
            if len(data) < self.NUM_POINTS or (self.ALL_POINTS and len(data) != self.NUM_POINTS):
                raise DataError(
                    path,
                    f"{len(data)} points, "
                    + (
                        f"not the {self.NUM_POINTS} of every shape of the archive"
                        if self.ALL_POINTS
                        else f"fewer than the {self.NUM_POINTS} to keep"
                    ),
                    f"it comes from {MODELNET_SOURCE}",
                )
            chunk.append((shape_id, label_of[cls], data))
            if len(chunk) == 32:
                yield from flush()
        if chunk:
            yield from flush()


class Modelnet10(Modelnet40):
    """ModelNet10: the ten-class subset, from the same folder and its modelnet10 lists."""

    NUM_CLASSES = 10


class Modelnet4010k(Modelnet40):
    """ModelNet40 with all 10,000 points of each shape in file order (ULIP-2's and Uni3D's input),
    from the same folder and lists."""

    name = "modelnet40_10k"
    NUM_POINTS = MODELNET_ALL_POINTS
    ALL_POINTS = True


# ------------------------------------------------------------------------------------------------
# ScanObjectNN

SCANOBJECTNN_FILES = {  # config -> (train file, test file), relative to the manual directory
    "obj_only": (
        "main_split_nobg/training_objectdataset.h5",
        "main_split_nobg/test_objectdataset.h5",
    ),
    "obj_bg": ("main_split/training_objectdataset.h5", "main_split/test_objectdataset.h5"),
    "pb_t50_rs": (
        "main_split/training_objectdataset_augmentedrot_scale75.h5",
        "main_split/test_objectdataset_augmentedrot_scale75.h5",
    ),
}
SCANOBJECTNN_NUM_CLASSES = 15


def read_scanobjectnn_h5(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """The `data` (M, 2048, 3) float32 and `label` (M,) int arrays of an official h5
    file, checked."""
    _require_file(path, SCANOBJECTNN_SOURCE)
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise DataError(path, f"not a readable HDF5 file ({errors.one_line(e)})") from None
    with f:
        for key in ("data", "label"):
            if key not in f:
                raise DataError(path, f"no key {key!r} (keys: {sorted(f.keys())})")
            if not hasattr(f[key], "dtype") or f[key].dtype.kind not in "iuf":
                raise DataError(path, f"key {key!r} is not an array of numbers")
        try:
            data = np.asarray(f["data"], np.float32)
            label = np.asarray(f["label"]).reshape(-1)
        except (OSError, ValueError, TypeError) as e:  # a truncated or damaged file
            raise DataError(path, f"unreadable arrays ({errors.one_line(e)})") from None
    if not len(data):
        raise DataError(path, "key 'data' holds no clouds")
    if data.ndim != 3 or data.shape[1:] != (SCANOBJECTNN_POINTS, 3):
        raise DataError(
            f"{path}", f"key 'data' has shape {data.shape}, expected (M, {SCANOBJECTNN_POINTS}, 3)"
        )
    if len(label) != len(data):
        raise DataError(
            f"{path}", f"key 'label' has {len(label)} entries but 'data' has {len(data)} clouds"
        )
    bad = (label < 0) | (label >= SCANOBJECTNN_NUM_CLASSES) | (label != np.round(label))
    if bad.any():
        raise DataError(
            f"{path}",
            f"key 'label' entry {int(np.argmax(bad))} is {label[bad][0]}, "
            f"not a class in [0, {SCANOBJECTNN_NUM_CLASSES})",
        )
    finite = np.isfinite(data).all(axis=(1, 2))
    if not finite.all():
        raise DataError(
            f"{path}", f"key 'data' cloud {int(np.argmin(finite))} has non-finite coordinates"
        )
    return data, label.astype(np.int64)


class Scanobjectnn(tfds.core.GeneratorBasedBuilder):
    """ScanObjectNN (OBJ_ONLY, OBJ_BG, PB_T50_RS) from the official h5 files, stored as read (no
    normalisation, as ReCon's loader)."""

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        tfds.core.BuilderConfig(name=name, description=f"files {files}")
        for name, files in SCANOBJECTNN_FILES.items()
    ]
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Extract {SCANOBJECTNN_SOURCE} and pass the folder holding main_split/ and "
        "main_split_nobg/ as the "
        "manual directory."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            disable_shuffling=True,
            features=tfds.features.FeaturesDict(
                {
                    **_point_features(SCANOBJECTNN_POINTS),
                    "label": tfds.features.ClassLabel(
                        names=list(classnames.scanobjectnn_classes("toilet"))
                    ),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        train, test = SCANOBJECTNN_FILES[self.builder_config.name]
        manual = pathlib.Path(dl_manager.manual_dir)
        return {
            "train": self._generate_examples(manual / train),
            "test": self._generate_examples(manual / test),
        }

    def _generate_examples(self, path: pathlib.Path):
        data, label = read_scanobjectnn_h5(path)
        for i in progress.bar(
            range(len(data)), total=len(data), desc=f"prepare {path.name}", unit="cloud"
        ):
            yield i, {"points": data[i], "label": int(label[i])}


# ------------------------------------------------------------------------------------------------
# ShapeNet-55 (ReCon's layout)


def read_shapenet_categories(path: pathlib.Path) -> list[tuple[str, str]]:
    """(synset, text) per class in label order from ReCon's shapenet55.json (a pandas table).

    Accepts pandas' default column orientation {"catalogue": {"0": 2691156, ...}, "describe": {...}}
    and a list of records [{"catalogue": ..., "describe": ...}, ...]. Synsets stored as integers get
    their leading zero back (2691156 -> "02691156"), as ReCon's loader does.
    """
    _require_file(path, SHAPENET_SOURCE)
    try:
        table = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(path, f"not valid JSON ({e})") from None
    if isinstance(table, dict):
        for key in ("catalogue", "describe"):
            if key not in table:
                raise DataError(path, f"no column {key!r} (columns: {sorted(table)})")
        rows = sorted(table["catalogue"], key=int)
        records = [
            {"catalogue": table["catalogue"][r], "describe": table["describe"].get(r)} for r in rows
        ]
    elif isinstance(table, list):
        records = table
    else:
        raise DataError(f"{path}", "expected a table (object of columns or list of records)")
    out = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or rec.get("catalogue") is None or not rec.get("describe"):
            raise DataError(f"{path}", f"row {i} lacks 'catalogue' or 'describe'")
        synset = str(rec["catalogue"])
        out.append((synset.zfill(8), str(rec["describe"])))
    return out


class Shapenet55(tfds.core.GeneratorBasedBuilder):
    """ShapeNet-55 with one rendered image and the category text per object (ReCon's pretraining
    data).

    Pretraining uses train and test together (ReCon's `whole = True`): see
    `ddjax.data.pipelines`.
    """

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Assemble {SHAPENET_SOURCE} in one folder: shapenet_pc/<synset>-<model>.npy, "
        "shapenet_img/<synset>-<model>.png, ShapeNet-55/train.txt, ShapeNet-55/test.txt, "
        "shapenet55.json."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),  # class_texts: the category text of each label
            features=tfds.features.FeaturesDict(
                {
                    **_point_features(SHAPENET_POINTS),
                    "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # PNG bytes
                    "label": tfds.features.ClassLabel(num_classes=55),
                    "text": tfds.features.Text(),
                    "id": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        manual = pathlib.Path(dl_manager.manual_dir)
        categories = read_shapenet_categories(manual / "shapenet55.json")
        if len(categories) != 55:
            raise DataError(
                manual / "shapenet55.json", f"lists {len(categories)} categories, expected 55"
            )
        self.info.features["label"].names = [synset for synset, _ in categories]
        self.info.metadata["class_texts"] = [text for _, text in categories]
        return {
            split: self._generate_examples(manual, split, categories) for split in ("train", "test")
        }

    def _generate_examples(self, manual: pathlib.Path, split: str, categories):
        label_of = {synset: (i, text) for i, (synset, text) in enumerate(categories)}
        list_path = manual / "ShapeNet-55" / f"{split}.txt"
        names = _read_list(list_path, SHAPENET_SOURCE)
        _check_unique(
            list_path, [(n, name[:-4] if name.endswith(".npy") else name) for n, name in names]
        )
        for line_no, name in progress.bar(
            names, total=len(names), desc=f"prepare shapenet55 {split}", unit="shape"
        ):
            stem = name[:-4] if name.endswith(".npy") else name
            synset = stem.split("-", 1)[0]
            if synset not in label_of:
                raise DataError(
                    f"{list_path}:{line_no}",
                    f"synset {synset!r} of {name!r} is not in shapenet55.json",
                )
            pc_path = _require_file(manual / "shapenet_pc" / f"{stem}.npy", SHAPENET_SOURCE)
            try:
                # a lying header reads nothing
                points = np.load(pc_path, mmap_mode="r", allow_pickle=False)
            except (ValueError, OSError, EOFError) as e:
                raise DataError(pc_path, f"not a plain .npy array ({errors.one_line(e)})") from None
            if points.shape != (SHAPENET_POINTS, 3) or points.dtype.kind not in "iuf":
                raise DataError(
                    pc_path,
                    f"shape {points.shape} and dtype {points.dtype}, expected "
                    f"({SHAPENET_POINTS}, 3) real numbers",
                )
            points = np.asarray(points, np.float32)
            if not np.isfinite(points).all():
                raise DataError(pc_path, "non-finite coordinates")
            image = _check_png(
                _require_file(manual / "shapenet_img" / f"{stem}.png", SHAPENET_SOURCE)
            )
            label, text = label_of[synset]
            yield (
                stem,
                {
                    "points": points.astype(np.float32),
                    "image": image,
                    "label": label,
                    "text": text,
                    "id": stem,
                },
            )


# ------------------------------------------------------------------------------------------------
# Synthetic shapes (no download)


@dataclasses.dataclass
class SyntheticShapesConfig(tfds.core.BuilderConfig):
    """How many objects per class each split holds."""

    train_per_class: int = 40
    test_per_class: int = 10


class SyntheticShapes(tfds.core.GeneratorBasedBuilder):
    """Procedural shapes (ddjax/data/synthetic.py): 8192 surface points, a render and a class text
    each.

    Needs no manual directory. Deterministic: the same version and config give the same data
    everywhere. Configs: `default` (40 train / 10 test objects per class) and `tiny` (4 / 2, for
    tests).
    """

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS = [
        SyntheticShapesConfig(name="default"),
        SyntheticShapesConfig(name="tiny", train_per_class=4, test_per_class=2),
    ]
    SEED = 0

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(
                class_texts=[synthetic.CLASS_TEXTS[c] for c in synthetic.CLASSES]
            ),
            features=tfds.features.FeaturesDict(
                {
                    **_point_features(MODELNET_POINTS),
                    "image": tfds.features.Tensor(shape=(), dtype=np.object_),  # PNG bytes
                    "label": tfds.features.ClassLabel(names=list(synthetic.CLASSES)),
                    "text": tfds.features.Text(),
                    "id": tfds.features.Text(),
                }
            ),
        )

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in ("train", "test")}

    def _generate_examples(self, split: str):
        per_class = getattr(self.builder_config, f"{split}_per_class")
        for ex in progress.bar(
            synthetic.generate(split, seed=self.SEED, per_class=per_class),
            total=per_class * len(synthetic.CLASSES),
            desc=f"prepare synthetic_shapes {split}",
            unit="shape",
        ):
            yield (
                ex["id"],
                {
                    "points": ex["points"].astype(np.float32),
                    "image": _png_bytes(ex["image"]),
                    "label": ex["label"],
                    "text": ex["text"],
                    "id": ex["id"],
                },
            )
