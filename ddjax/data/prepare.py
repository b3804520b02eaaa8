"""Preparing and opening the tfds datasets: one place that maps dataset names to builders.

builder = prepare("modelnet40", data_dir="~/tensorflow_datasets",
                  manual_dir=".../modelnet40_normal_resampled")
source = open_dataset("modelnet40", data_dir).as_data_source("test")  # random access, no TF
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import shutil

import tensorflow_datasets as tfds

from ddjax import config_checks, errors, run_folder
from ddjax.data import builders, folder

# name -> (builder class, config name or None, whether it reads a manual directory)
DATASETS = {
    "modelnet40": (builders.Modelnet40, None, True),
    "modelnet10": (builders.Modelnet10, None, True),
    "modelnet40_10k": (builders.Modelnet4010k, None, True),
    "scanobjectnn/obj_only": (builders.Scanobjectnn, "obj_only", True),
    "scanobjectnn/obj_bg": (builders.Scanobjectnn, "obj_bg", True),
    "scanobjectnn/pb_t50_rs": (builders.Scanobjectnn, "pb_t50_rs", True),
    "shapenet55": (builders.Shapenet55, None, True),
    "synthetic_shapes": (builders.SyntheticShapes, "default", False),
    "synthetic_shapes/tiny": (builders.SyntheticShapes, "tiny", False),
}
# ... and folder/NAME: a folder of your own categories (ddjax/data/folder.py), any NAME


def _entry(name: str):
    if folder.is_folder_dataset(name):
        return folder.Folder, name[len(folder.PREFIX) :], True
    if name not in DATASETS:
        raise errors.ConfigError(
            "dataset",
            f"unknown dataset {name!r}",
            f"use one of {sorted(DATASETS)}, or folder/NAME (a folder of your own categories)",
        )
    return DATASETS[name]


def check_dataset(config, key: str = "dataset") -> str:
    """config.<key>: a name of DATASETS or folder/NAME; ConfigError otherwise (nothing is read)."""
    name = config
    for part in key.split("."):  # a dotted key: eval.dataset
        name = name[part]
    if isinstance(name, str) and folder.is_folder_dataset(name):
        folder.check_name(name[len(folder.PREFIX) :], key)
        return name
    return config_checks.check_choice(config, key, sorted(DATASETS))


def get_builder(
    name: str, data_dir: str | os.PathLike, points: int = folder.DEFAULT_POINTS
) -> tfds.core.DatasetBuilder:
    """The builder of `name` in `data_dir` (`points`: what a folder dataset's build keeps)."""
    cls, config, _ = _entry(name)
    if cls is folder.Folder:
        config = folder.FolderConfig(name=config, points=points)
    kwargs = {"config": config} if config else {}
    return cls(
        data_dir=os.fspath(os.path.expanduser(data_dir)), file_format="array_record", **kwargs
    )


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    return (pathlib.Path(builder.data_dir) / "dataset_info.json").is_file()


def prepare_command(name: str, data_dir: str) -> str:
    manual = " --config.manual_dir=DIR" if _entry(name)[2] else ""
    if folder.is_folder_dataset(name):
        name = f"folder --config.name={name[len(folder.PREFIX) :]}"
    return f"python main.py --config=configs/prepare.py:{name} --config.data_dir={data_dir}{manual}"


SOURCE_RECORD = "ddjax_source.json"  # in the build folder: what it was built from


def manual_fingerprint(manual: pathlib.Path) -> dict:
    """What a build records about its manual folder: the folder, and its files' relative paths and
    sizes (their count and a SHA-1 over the sorted list), so that a different download is noticed.
    """
    entries = sorted(
        f"{p.relative_to(manual).as_posix()}\t{p.stat().st_size}"
        for p in manual.rglob("*")
        if p.is_file()
    )
    return {
        "manual_dir": os.fspath(manual.resolve()),
        "files": len(entries),
        "files_sha1": hashlib.sha1("\n".join(entries).encode()).hexdigest(),
    }


def _remove_incomplete(builder) -> list[pathlib.Path]:
    """Removes the `incomplete.*` folders a killed build of `builder` left beside its data_dir."""
    version_dir = pathlib.Path(builder.data_dir)
    leftovers = (
        sorted(version_dir.parent.glob(f"incomplete.*_{version_dir.name}"))
        if version_dir.parent.is_dir()
        else []
    )
    for path in leftovers:
        shutil.rmtree(path, ignore_errors=True)
    return leftovers


def prepare(
    name: str,
    data_dir: str | os.PathLike,
    manual_dir: str | os.PathLike | None = None,
    *,
    rebuild: bool = False,
    points: int = folder.DEFAULT_POINTS,
) -> tfds.core.DatasetBuilder:
    """Builds `name` into `data_dir` (array_record) from the official files in `manual_dir`;
    idempotent.

    An existing build of a manual dataset records its manual folder's fingerprint; given a
    manual folder whose fingerprint differs, prepare refuses (one DataError line) unless
    `rebuild`, which replaces the old build only once the new one is complete. Leftover
    `incomplete.*` folders of a killed build are removed. `points`: what each example of a folder
    dataset keeps (recorded with the fingerprint: another number is another build).
    """
    builder = get_builder(name, data_dir, points)
    needs_manual = _entry(name)[2]
    manual = pathlib.Path(os.path.expanduser(manual_dir)) if manual_dir else None
    if manual is not None and needs_manual and not manual.is_dir():
        raise errors.ConfigError(
            "manual_dir",
            f"{manual} does not exist or is not a folder",
            builder.MANUAL_DOWNLOAD_INSTRUCTIONS,
        )
    fingerprint = manual_fingerprint(manual) if manual is not None and needs_manual else None
    if fingerprint is not None and folder.is_folder_dataset(name):
        fingerprint["points"] = points
    if is_prepared(builder) and _up_to_date(builder, manual, fingerprint, rebuild):
        return builder
    _remove_incomplete(builder)
    tfds.disable_progress_bar()  # the builders show ddjax's own (ddjax/progress.py)
    config = None
    if needs_manual:
        if manual is None:
            raise errors.ConfigError(
                "manual_dir",
                f"dataset {name!r} is built from your downloaded files",
                f"pass their folder as --config.manual_dir=DIR. "
                f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}",
            )
        config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual))
    return _build(name, data_dir, builder, config, fingerprint, points)


def _up_to_date(
    builder, manual: pathlib.Path | None, fingerprint: dict | None, rebuild: bool
) -> bool:
    """Whether an existing build stands as it is: it does unless it was made from other manual files
    (then DataError, or False with `rebuild`). A build made before builds recorded their source
    adopts this folder's fingerprint."""
    if fingerprint is None:
        return True
    record = pathlib.Path(builder.data_dir) / SOURCE_RECORD
    try:
        recorded = json.loads(record.read_text()) if record.is_file() else None
    except (OSError, ValueError):
        recorded = None
    if recorded is None:
        run_folder.write_text(record, json.dumps(fingerprint, indent=1))
        return True
    if all(recorded.get(k) == v for k, v in fingerprint.items() if k != "manual_dir"):
        return True
    if not rebuild:
        same_files = all(recorded.get(k) == fingerprint[k] for k in ("files", "files_sha1"))
        raise builders.DataError(
            builder.data_dir,
            (
                f"already built with {recorded.get('points')} points per example, not "
                f"{fingerprint.get('points')}"
                if same_files
                else f"already built from {recorded['manual_dir']} ({recorded['files']} files), "
                f"and {manual} holds different files ({fingerprint['files']})"
            )
            + "; nothing was changed",
            "pass --config.rebuild=True to replace the build, or another --config.data_dir to "
            "keep both",
        )
    return False


def _build(
    name: str, data_dir, builder, config, fingerprint: dict | None, points: int
) -> tfds.core.DatasetBuilder:
    """Builds into a fresh folder; an existing build is kept aside until the new one is complete,
    and restored if it fails (an OSError is one DataError line)."""
    old = pathlib.Path(builder.data_dir)
    # rebuild: kept until the new one is done
    kept = old.with_name(f"replaced.{old.name}") if old.exists() else None
    if kept is not None:
        shutil.rmtree(kept, ignore_errors=True)
        os.replace(old, kept)
    try:
        builder = get_builder(name, data_dir, points)
        # tfds starts and ends a build with a line of its own on stdout; the console shows ddjax's
        # only (the build's progress lines, and the prepare job's summary)
        builder._log_download_done = builder._log_download_bytes = lambda: None
        builder.download_and_prepare(download_config=config)
        if fingerprint is not None:
            run_folder.write_text(
                pathlib.Path(builder.data_dir) / SOURCE_RECORD, json.dumps(fingerprint, indent=1)
            )
    except BaseException as e:
        _remove_incomplete(builder)
        if kept is not None:
            shutil.rmtree(old, ignore_errors=True)
            os.replace(kept, old)
        if isinstance(e, OSError):
            raise builders.DataError(
                data_dir,
                f"the build failed ({errors.one_line(e)})",
                "check the disk space and permissions of --config.data_dir",
            ) from None
        raise
    if kept is not None:
        shutil.rmtree(kept, ignore_errors=True)
    return builder


def open_dataset(name: str, data_dir: str | os.PathLike) -> tfds.core.DatasetBuilder:
    """The prepared builder; DataError with the command that prepares it if it is not there."""
    builder = get_builder(name, data_dir)
    if not is_prepared(builder):
        raise builders.DataError(
            builder.data_dir,
            f"dataset {name!r} is not prepared in {data_dir}",
            f"prepare it with: {prepare_command(name, os.fspath(data_dir))}",
        )
    return builder
