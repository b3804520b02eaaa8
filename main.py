"""ddjax entry point: `python main.py --config=configs/<name>.py[:arg] --workdir=DIR`.

Parses flags and hands the config to its job; all work happens in the job's module.
"""
import sys

from absl import app
from absl import flags
from ml_collections import config_flags

from ddjax import classify
from ddjax import demo
from ddjax import robustness
from ddjax import run_folder
from ddjax import runtime
from ddjax import train
from ddjax import zeroshot
from ddjax.data import builders
from ddjax.data import readers
from ddjax.data import prepare
from ddjax.teachers import cache
from ddjax.teachers import clip

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/demo.py:smoke.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for outputs (checkpoints, metrics, reports).")

JOBS = {
    "kernels_demo": demo.run,
    "pretrain": train.train_and_evaluate,
    "zeroshot": zeroshot.run,
    "classify": classify.run,
    "attack": robustness.run,
    "prepare": prepare.run,
    "teacher_cache": cache.run,
}


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if config is None:
        raise app.UsageError("--config is required, e.g. --config=configs/demo.py")
    if config.job not in JOBS:
        raise app.UsageError(f"config.job={config.job!r} is not one of {sorted(JOBS)}")
    runtime.initialize(config)  # jax.distributed when configured; one line: backend, devices, kernels
    try:
        JOBS[config.job](config, _WORKDIR.value)
    except (builders.DataError, readers.PointFileError, clip.TeacherLoadError, run_folder.RunFolderError,
            FileNotFoundError) as e:
        sys.exit(f"error: {e}")  # the user's data or weights: one clear line, no traceback


if __name__ == "__main__":
    app.run(main)
