"""Preparing and opening the tfds datasets: one place that maps dataset names to builders.

    builder = prepare("modelnet40", data_dir="~/tensorflow_datasets", manual_dir=".../modelnet40_normal_resampled")
    source = open_dataset("modelnet40", data_dir).as_data_source("test")   # random access, no TensorFlow
"""
from __future__ import annotations

import os
import pathlib

import tensorflow_datasets as tfds

from ddjax import errors
from ddjax.data import builders

# name -> (builder class, config name or None, whether it reads a manual directory)
DATASETS = {
    "modelnet40": (builders.Modelnet40, None, True),
    "modelnet10": (builders.Modelnet10, None, True),
    "scanobjectnn/obj_only": (builders.Scanobjectnn, "obj_only", True),
    "scanobjectnn/obj_bg": (builders.Scanobjectnn, "obj_bg", True),
    "scanobjectnn/pb_t50_rs": (builders.Scanobjectnn, "pb_t50_rs", True),
    "shapenet55": (builders.Shapenet55, None, True),
    "synthetic_shapes": (builders.SyntheticShapes, "default", False),
    "synthetic_shapes/tiny": (builders.SyntheticShapes, "tiny", False),
}


def _entry(name: str):
    if name not in DATASETS:
        raise errors.ConfigError("dataset", f"unknown dataset {name!r}", f"use one of {sorted(DATASETS)}")
    return DATASETS[name]


def get_builder(name: str, data_dir: str | os.PathLike) -> tfds.core.DatasetBuilder:
    cls, config, _ = _entry(name)
    kwargs = {"config": config} if config else {}
    return cls(data_dir=os.fspath(os.path.expanduser(data_dir)), file_format="array_record", **kwargs)


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
    return (pathlib.Path(builder.data_dir) / "dataset_info.json").is_file()


def prepare_command(name: str, data_dir: str) -> str:
    manual = " --config.manual_dir=DIR" if _entry(name)[2] else ""
    return f"python main.py --config=configs/prepare.py:{name} --config.data_dir={data_dir}{manual}"


def prepare(name: str, data_dir: str | os.PathLike, manual_dir: str | os.PathLike | None = None,
            ) -> tfds.core.DatasetBuilder:
    """Builds `name` into `data_dir` (array_record) from the official files in `manual_dir`; idempotent."""
    builder = get_builder(name, data_dir)
    if is_prepared(builder):
        return builder
    needs_manual = _entry(name)[2]
    config = None
    if needs_manual:
        if not manual_dir:
            raise errors.ConfigError("manual_dir", f"dataset {name!r} is built from your downloaded files",
                                     f"pass their folder as --config.manual_dir=DIR. "
                                     f"{builder.MANUAL_DOWNLOAD_INSTRUCTIONS}")
        manual = pathlib.Path(os.path.expanduser(manual_dir))
        if not manual.is_dir():
            raise errors.ConfigError("manual_dir", f"{manual} does not exist or is not a folder",
                                     builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
        config = tfds.download.DownloadConfig(manual_dir=os.fspath(manual))
    builder.download_and_prepare(download_config=config)
    return builder


def open_dataset(name: str, data_dir: str | os.PathLike) -> tfds.core.DatasetBuilder:
    """The prepared builder; DataError with the command that prepares it if it is not there."""
    builder = get_builder(name, data_dir)
    if not is_prepared(builder):
        raise builders.DataError(builder.data_dir, f"dataset {name!r} is not prepared in {data_dir}",
                                 f"prepare it with: {prepare_command(name, os.fspath(data_dir))}")
    return builder


def run(config, workdir: str | None = None) -> tfds.core.DatasetBuilder:
    """The prepare job: build `config.dataset` into `config.data_dir` and print what was written."""
    builder = prepare(config.dataset, config.data_dir, config.manual_dir or None)
    splits = ", ".join(f"{name} {info.num_examples}" for name, info in builder.info.splits.items())
    print(f"prepared {config.dataset} in {builder.data_dir}: {splits}")
    return builder
