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


def _config_keys(config, prefix="") -> list[str]:
    keys = []
    for key, value in config.items():
        keys += _config_keys(value, f"{prefix}{key}.") if hasattr(value, "items") else [f"{prefix}{key}"]
    return keys


def _flag_error(argv: list[str], error: Exception) -> str:
    """One line for a flag or config error: the unknown override key with the closest valid one, or the
    config file's own complaint."""
    import difflib
    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
    overrides = [a[len("--config."):].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    if config_arg and overrides:  # load the config alone (not through FLAGS): is an override's key unknown?
        import importlib.util
        path, _, arg = config_arg.partition(":")
        try:
            spec = importlib.util.spec_from_file_location("_user_config", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            keys = _config_keys(module.get_config(arg) if arg else module.get_config())
        except Exception:  # noqa: BLE001 - the config itself fails: reported below
            keys = None
        for key in overrides if keys is not None else []:
            if key not in keys:
                close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
                hint = f"did you mean config.{close[0]}?" if close else f"the keys are listed in {config_arg.split(':')[0]}"
                return f"unknown config key (config.{key}): {config_arg} has no such key; {hint}"
    why = str(error).strip().splitlines()[-1].strip() if str(error).strip() else type(error).__name__
    where = f"--config={config_arg}" if config_arg else "flags"
    if isinstance(error, OSError):
        return f"cannot load the config file ({where}): {why}; pass --config=configs/<name>.py[:arg]"
    return f"bad flag or config value ({where}): {why}; see the config file's docstring for the accepted values"


def parse_flags(argv: list[str]) -> list[str]:
    """absl's flag parsing (app.run's flags_parser), with every user error as one line and exit status 2."""
    try:
        rest = flags.FLAGS(argv)
        if _CONFIG.value is not None:  # a config file that fails to load raises on first use: here, one line
            _CONFIG.value.keys()
        return rest
    except Exception as e:  # noqa: BLE001 - flags.Error, AttributeError (an unknown key), the config's ValueError
        sys.stderr.write(f"error: {_flag_error(argv, e)}\n")
        sys.exit(2)


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
    app.run(main, flags_parser=parse_flags)
