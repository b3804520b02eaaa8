"""The prepare job (configs/prepare.py:DATASET): build a dataset from its official files
(ddjax/data/prepare.py) into config.data_dir and print what was written. Preparing again from the
same files does nothing; from different files it refuses unless --config.rebuild=True.
`configs/prepare.py:folder` builds folder/NAME from a folder of your own categories
(ddjax/data/folder.py): NAME is --config.name, else the folder's name.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from ddjax import config_checks, errors
from ddjax.data import folder, prepare

KEYS = {"": {"job", "dataset", "data_dir", "manual_dir", "rebuild", "name", "points"}}


def dataset_name(config) -> str:
    """config.dataset, or folder/NAME for configs/prepare.py:folder; every value checked."""
    config_checks.check_keys(config, KEYS)
    config_checks.check_choice(config, "rebuild", (True, False))
    if config.dataset != "folder":
        return prepare.check_dataset(config)
    config_checks.check_int(config, "points", 1)
    if not config.manual_dir:
        raise errors.ConfigError(
            "manual_dir",
            "a folder dataset is built from your folder of class subfolders",
            f"pass it as --config.manual_dir=DIR; the layout is {folder.LAYOUT}",
        )
    name = config.name or folder.default_name(config.manual_dir)
    return folder.PREFIX + folder.check_name(name)


def check_config(config, workdir: str | None = None) -> None:
    dataset_name(config)


def run(config, workdir: str | None = None) -> tfds.core.DatasetBuilder:
    """The prepare job: build the dataset into `config.data_dir` and print what was written."""
    name = dataset_name(config)
    builder = prepare.prepare(
        name,
        config.data_dir,
        config.manual_dir or None,
        rebuild=config.rebuild,
        **({"points": config.points} if folder.is_folder_dataset(name) else {}),
    )
    splits = ", ".join(
        f"{split} {info.num_examples}" for split, info in builder.info.splits.items()
    )
    print(f"prepared {name} in {builder.data_dir}: {splits}")
    if folder.is_folder_dataset(name):
        classes = builder.info.features["label"].names
        skipped = dict(builder.info.metadata.get("skipped") or {})
        if skipped:
            kinds = ", ".join(f"{suffix} {n}" for suffix, n in sorted(skipped.items()))
            print(f"{name}: skipped {sum(skipped.values())} files of other types ({kinds})")
        print(
            f"{name}: {len(classes)} classes ({', '.join(classes[:5])}"
            f"{', ...' if len(classes) > 5 else ''}); evaluate it with "
            f"--config=configs/zeroshot.py:{name} --config.data_dir={config.data_dir}"
        )
    return builder
