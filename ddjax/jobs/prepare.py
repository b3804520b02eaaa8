"""The prepare job (configs/prepare.py:DATASET): build a dataset from its official files
(ddjax/data/prepare.py) into config.data_dir and print what was written. Preparing again from the
same files does nothing; from different files it refuses unless --config.rebuild=True.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from ddjax import config_checks
from ddjax.data import prepare

KEYS = {"": {"job", "dataset", "data_dir", "manual_dir", "rebuild"}}


def check_config(config, workdir: str | None = None) -> None:
    config_checks.check_keys(config, KEYS)
    config_checks.check_choice(config, "dataset", sorted(prepare.DATASETS))
    config_checks.check_choice(config, "rebuild", (True, False))


def run(config, workdir: str | None = None) -> tfds.core.DatasetBuilder:
    """The prepare job: build `config.dataset` into `config.data_dir` and print what was written."""
    check_config(config, workdir)
    builder = prepare.prepare(
        config.dataset, config.data_dir, config.manual_dir or None, rebuild=config.rebuild
    )
    splits = ", ".join(f"{name} {info.num_examples}" for name, info in builder.info.splits.items())
    print(f"prepared {config.dataset} in {builder.data_dir}: {splits}")
    return builder
