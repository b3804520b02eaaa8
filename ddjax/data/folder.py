"""Your own categories: a tfds dataset built from a folder of class subfolders (the ImageFolder
convention), `configs/prepare.py:folder --config.manual_dir=DIR [--config.name=NAME]`.

  DIR/<class>/<files>                       every file is a test example
  DIR/train/<class>/<files>, DIR/test/...   the two splits (test/ is required, train/ optional)
  DIR/classes.txt                           optional: the label order and prompt names, one class a
                                            line, `folder` or `folder: prompt name`

Files: every point or mesh file ddjax reads (readers.POINT_FILE_SUFFIXES: .npy, .txt/.xyz, .ply,
.off, .obj, .glb, .gltf, .stl), at any depth under its class folder (a glTF's buffers, an OBJ's
materials and textures beside them are read by their file and otherwise skipped); hidden files are
skipped. Without classes.txt the labels are the class folders in sorted order and each prompt name
is its folder's name with `_` as spaces. Each example keeps `points` points (the config's, 8192 by
default): a mesh is sampled area-weighted on its surface with a generator seeded by the file's
relative path, a point cloud with more points is reduced by farthest point sampling from its first
point (as ModelNet's build), a point cloud with fewer is refused. Stored raw (not normalised); the
evaluation normalises to the unit ball, as on ModelNet.

The dataset is `folder/NAME` in every evaluation job (zeroshot, attack, certify, classify's
`--config.dataset`); its class prompt names are its `class_texts` metadata.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import pathlib
import re
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

from ddjax import errors, progress
from ddjax.data import builders, readers
from kernels import fps

PREFIX = "folder/"  # a folder dataset's name in the jobs: folder/NAME
DEFAULT_POINTS = 8192
CLASSES_FILE = "classes.txt"
SPLITS = ("train", "test")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
SEED = 0
LAYOUT = (
    "DIR/<class>/<files> (all test), or DIR/train/<class>/<files> and DIR/test/<class>/<files>, "
    "with an optional DIR/classes.txt (`folder` or `folder: prompt name` per line)"
)


class DataError(builders.DataError):
    """A folder dataset's folder or file is malformed: DataError(path[:line], why[, what to do])."""

    todo = "fix it (configs/prepare.py's docstring shows a folder dataset's layout)"


def is_folder_dataset(name: str) -> bool:
    return str(name).startswith(PREFIX)


def check_name(name: str, key: str = "name") -> str:
    """NAME of folder/NAME: letters, digits, `_`, `.` and `-`, starting with a letter or digit
    (it names a folder of data_dir); ConfigError otherwise."""
    if not NAME_PATTERN.fullmatch(str(name)):
        raise errors.ConfigError(
            key,
            f"{name!r} is not a dataset name",
            "use letters, digits, '_', '.' and '-', starting with a letter or digit",
        )
    return str(name)


def default_name(manual_dir) -> str:
    """The name a folder dataset gets without --config.name: its folder's, with every character
    outside NAME_PATTERN as `_`."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", pathlib.Path(manual_dir).expanduser().resolve().name)
    return name if NAME_PATTERN.fullmatch(name) else f"d{name}"


@dataclasses.dataclass(frozen=True)
class Layout:
    """What a folder holds: its classes (folder name, prompt name) in label order, and each split's
    examples (file path relative to DIR, label), sorted by path."""

    classes: list[tuple[str, str]]
    splits: dict[str, list[tuple[str, int]]]
    skipped: dict[str, int]  # suffix -> files of other types, not read


def _visible(path: pathlib.Path) -> bool:
    return not path.name.startswith(".")


def _subfolders(folder: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _read_classes_file(path: pathlib.Path) -> list[tuple[str, str]]:
    """classes.txt: (folder, prompt) per non-empty line; DataError naming the line of a repeat."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(path, f"not a text file (byte {e.start} is not UTF-8)") from None
    classes, seen = [], {}
    for line_no, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        folder, _, prompt = (part.strip() for part in line.partition(":"))
        if not folder:
            raise DataError(f"{path}:{line_no}", "no class folder before ':'")
        if folder in seen:
            raise DataError(
                f"{path}:{line_no}",
                f"class {folder!r} is listed again (first at line {seen[folder]})",
                "list each class folder once",
            )
        seen[folder] = line_no
        classes.append((folder, prompt or folder.replace("_", " ")))
    if not classes:
        raise DataError(path, "lists no class", "write one class folder per line")
    return classes


def _split_dirs(manual: pathlib.Path) -> dict[str, pathlib.Path]:
    """split -> the folder holding its class folders: train/ and test/, or `manual` as test."""
    if not manual.is_dir():
        raise DataError(manual, "does not exist or is not a folder", f"the layout is {LAYOUT}")
    top = _subfolders(manual)
    split_dirs = {p.name: p for p in top if p.name in SPLITS}
    if not split_dirs:
        return {"test": manual}
    others = [p.name for p in top if p.name not in SPLITS]
    if others:
        raise DataError(
            manual,
            f"holds split folders ({', '.join(sorted(split_dirs))}) and class folders "
            f"({', '.join(others[:3])}) side by side",
            "put every class folder inside train/ and test/, or use no split folders",
        )
    if "test" not in split_dirs:
        raise DataError(
            manual, "has a train/ folder but no test/ folder", f"the layout is {LAYOUT}"
        )
    return split_dirs


def _classes(manual: pathlib.Path, folders: list[str]) -> list[tuple[str, str]]:
    """(folder, prompt) per class in label order: classes.txt's, else the sorted class folders."""
    classes_file = manual / CLASSES_FILE
    if classes_file.is_file():
        classes = _read_classes_file(classes_file)
        listed = {folder for folder, _ in classes}
        unlisted = [f for f in folders if f not in listed]
        if unlisted:
            raise DataError(
                classes_file,
                f"does not list the class folder {unlisted[0]!r}",
                "list every class folder, or remove the folder",
            )
        missing = [folder for folder, _ in classes if folder not in folders]
        if missing:
            raise DataError(
                classes_file,
                f"lists the class {missing[0]!r}, which has no folder",
                "add its folder of files, or remove the line",
            )
    else:
        classes = [(folder, folder.replace("_", " ")) for folder in folders]
    if len(classes) < 2:
        raise DataError(
            manual,
            f"holds {len(classes)} class folder{'' if len(classes) == 1 else 's'}",
            f"zero-shot needs two or more; the layout is {LAYOUT}",
        )
    return classes


def _split_files(split_dir: pathlib.Path, folders: list[str], skipped: collections.Counter):
    """(path, class folder) of each point or mesh file under split_dir's class folders, sorted,
    every header checked; other files counted by suffix in `skipped`, hidden ones left out."""
    stray = sorted(
        p.name
        for p in split_dir.iterdir()
        if p.is_file()
        and p.suffix.lower() in readers.POINT_FILE_SUFFIXES
        and p.name != CLASSES_FILE
    )
    if stray:
        raise DataError(
            split_dir / stray[0],
            "is not inside a class folder",
            f"move it into its class folder (the layout is {LAYOUT})",
        )
    for folder in folders:
        for path in sorted((split_dir / folder).rglob("*")):
            hidden = any(part.startswith(".") for part in path.relative_to(split_dir).parts)
            if not path.is_file() or hidden:
                continue
            if path.suffix.lower() not in readers.POINT_FILE_SUFFIXES:
                skipped[path.suffix.lower() or "(none)"] += 1
                continue
            readers.check_header(path)
            yield path, folder


def scan(manual: pathlib.Path) -> Layout:
    """The layout of `manual` (see the module docstring), every file's header checked
    (`readers.check_header`); DataError naming the folder, file or line otherwise. Nothing is read
    whole."""
    split_dirs = _split_dirs(manual)
    found = {split: [p.name for p in _subfolders(d)] for split, d in split_dirs.items()}
    classes = _classes(manual, sorted(set().union(*found.values())))
    label_of = {folder: i for i, (folder, _) in enumerate(classes)}
    skipped: collections.Counter = collections.Counter()
    splits = {
        split: [
            (path.relative_to(manual).as_posix(), label_of[folder])
            for path, folder in _split_files(split_dir, found[split], skipped)
        ]
        for split, split_dir in split_dirs.items()
    }
    counts = collections.Counter(label for examples in splits.values() for _, label in examples)
    empty = [folder for i, (folder, _) in enumerate(classes) if not counts[i]]
    if empty:
        where = next(d / empty[0] for d in split_dirs.values() if (d / empty[0]).is_dir())
        raise DataError(
            where,
            f"class {empty[0]!r} has no point or mesh file",
            f"add files of the types {', '.join(readers.POINT_FILE_SUFFIXES)}, or remove the class",
        )
    return Layout(classes, splits, dict(skipped))


def farthest_points(points: np.ndarray, num_samples: int) -> np.ndarray:
    """FPS from index 0 of f32[N, 3] down to `num_samples` points (N >= num_samples), the same
    indices as FPS of the unpadded cloud: the cloud is padded to the next power of two with copies
    of its first point, which sit at distance 0 from the first pick and are never chosen while a
    real point remains, so clouds of many sizes share a few compilations."""
    n = len(points)
    size = 1 << max(n - 1, 1).bit_length()
    padded = np.concatenate([points, np.repeat(points[:1], size - n, 0)])  # (size, 3)
    idx = np.asarray(_fps(jnp.asarray(padded[None]), num_samples))[0]  # (num_samples,)
    return points[idx]


@functools.partial(jax.jit, static_argnums=1)
def _fps(points: jax.Array, num_samples: int) -> jax.Array:
    return fps(points, num_samples)


@dataclasses.dataclass
class FolderConfig(tfds.core.BuilderConfig):
    """One folder dataset: its name (NAME of folder/NAME) and the points each example keeps."""

    points: int = DEFAULT_POINTS


class Folder(tfds.core.GeneratorBasedBuilder):
    """A folder of class subfolders of point and mesh files (ddjax/data/folder.py)."""

    VERSION = tfds.core.Version("1.0.0")
    MANUAL_DOWNLOAD_INSTRUCTIONS = (
        f"Pass the folder as --config.manual_dir; the layout is {LAYOUT}."
    )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.__doc__,
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),  # class_texts: the prompt name of each label
            features=tfds.features.FeaturesDict(
                {
                    # (points, 3): one size per build, the config's
                    "points": tfds.features.Tensor(shape=(None, 3), dtype=np.float32),
                    "label": tfds.features.ClassLabel(),  # the class folders' names
                    "id": tfds.features.Text(),  # the file, relative to the folder
                }
            ),
        )

    def _split_generators(self, dl_manager):
        manual = pathlib.Path(dl_manager.manual_dir)
        layout = scan(manual)
        self.info.features["label"].names = [folder for folder, _ in layout.classes]
        self.info.metadata["class_texts"] = [prompt for _, prompt in layout.classes]
        self.info.metadata["skipped"] = layout.skipped  # suffix -> files of other types
        return {
            split: self._generate_examples(manual, split, examples)
            for split, examples in layout.splits.items()
        }

    def _generate_examples(self, manual: pathlib.Path, split: str, examples):
        keep = self.builder_config.points
        for file_id, label in progress.bar(
            examples,
            total=len(examples),
            desc=f"prepare {PREFIX}{self.builder_config.name} {split}",
            unit="file",
        ):
            yield (
                file_id,
                {
                    "points": read_example(manual / file_id, file_id, keep),
                    "label": label,
                    "id": file_id,
                },
            )


def read_example(path: pathlib.Path, file_id: str, keep: int) -> np.ndarray:
    """f32[keep, 3]: a mesh's surface samples (seeded by `file_id`), a cloud's FPS subsample."""
    rng = np.random.default_rng([SEED, zlib.crc32(file_id.encode())])
    try:
        vertices = readers.read_cloud(path, keep, rng)  # a mesh: `keep` samples
    except readers.PointFileError as e:
        raise DataError(e.where, e.why, e.todo) from None
    if len(vertices) < keep:
        raise DataError(
            path,
            f"{len(vertices)} points, fewer than the {keep} each example keeps",
            "prepare with a lower --config.points, or remove the file",
        )
    points = vertices.astype(np.float32)
    return points if len(points) == keep else farthest_points(points, keep)
