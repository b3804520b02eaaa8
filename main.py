"""ddjax entry point: `python main.py --config=configs/<name>.py[:arg] --workdir=DIR`.

Several processes (README, "Several hosts"): the same command in each, plus
`--coordinator_address=HOST:PORT --num_processes=N --process_id=I` (or nothing inside Slurm, Open
MPI, a TPU pod or GKE: JAX detects them). pretrain, zeroshot and attack split their work over every
process; the other jobs run in process 0 while the others wait. Only process 0 prints progress and
writes outputs.

Compiled programs are kept in JAX's persistent compilation cache (README, "Compilation cache"):
`--compilation_cache_dir=DIR` (default $JAX_COMPILATION_CACHE_DIR, else
~/.cache/ddjax/jax-compilation-cache), `--nocompilation_cache` to turn it off.

Parses flags and hands the config to its job; all work happens in the job's module. Exit status: 0
done; 1 a user error (config value, input file, dataset files, checkpoint, run folder), reported as
one line `error: <what> (<file or config key>): <why>; <what to do>`; 2 a flag or config-file error
(one line); 70 a bug in ddjax (its traceback, then a line saying where to report it).
"""

import contextlib
import difflib
import importlib.util
import logging as std_logging
import os
import re
import sys
import traceback
import warnings

import jax
from absl import app, flags, logging
from ml_collections import config_flags

from ddjax import compilation_cache, distributed, errors, run_folder
from ddjax.jobs import (
    attack,
    certify,
    classify,
    convert,
    export,
    kernels_demo,
    prepare,
    pretrain,
    teacher_cache,
    visualize,
    zeroshot,
)

# config.job (= the config file's name, configs/<name>.py) -> its job module (ddjax/jobs/<name>.py),
# each with check_config(config, workdir) and run(config, workdir).
JOBS = {
    "attack": attack,
    "certify": certify,
    "classify": classify,
    "convert": convert,
    "export": export,
    "kernels_demo": kernels_demo,
    "prepare": prepare,
    "pretrain": pretrain,
    "teacher_cache": teacher_cache,
    "visualize": visualize,
    "zeroshot": zeroshot,
}
# every process takes part; the others run in process 0 alone
SPLIT_JOBS = ("pretrain", "zeroshot", "attack")
UNLOCKED = ("convert",)  # jobs that take no run-folder lock (`run_folder.held`)
EXIT_USER_ERROR, EXIT_USAGE, EXIT_BUG = 1, 2, 70


def define_flags(flag_values: flags.FlagValues):
    """The flags, on `flag_values` (absl's global FLAGS for the command line; a fresh set
    in-process): config, workdir, the launch flags of a multi-process run and the compilation-cache
    flags ({name: holder} each)."""
    config = config_flags.DEFINE_config_file(
        "config",
        None,
        "Config file, e.g. configs/kernels_demo.py:smoke.",
        flag_values=flag_values,
        lock_config=True,
    )
    workdir = flags.DEFINE_string(
        "workdir",
        None,
        "Directory for outputs (checkpoints, metrics, reports).",
        flag_values=flag_values,
    )
    launch = {
        "coordinator_address": flags.DEFINE_string(
            "coordinator_address",
            None,
            "Several processes: HOST:PORT of process 0 (the same in every process).",
            flag_values=flag_values,
        ),
        "num_processes": flags.DEFINE_integer(
            "num_processes", None, "Several processes: how many.", flag_values=flag_values
        ),
        "process_id": flags.DEFINE_integer(
            "process_id",
            None,
            "Several processes: this one's index, 0..N-1.",
            flag_values=flag_values,
        ),
        "startup_timeout": flags.DEFINE_integer(
            "startup_timeout",
            300,
            "Several processes: seconds to wait for all of them to join before giving up.",
            flag_values=flag_values,
        ),
    }
    cache = {
        "enabled": flags.DEFINE_boolean(
            "compilation_cache",
            True,
            "Keep compiled programs in JAX's persistent compilation cache, so that a "
            "resumed run or a second evaluation does not compile again (--nocompilation_cache: "
            "off).",
            flag_values=flag_values,
        ),
        "directory": flags.DEFINE_string(
            "compilation_cache_dir",
            None,
            "The compilation cache's folder (default: $JAX_COMPILATION_CACHE_DIR, "
            "else ~/.cache/ddjax/jax-compilation-cache).",
            flag_values=flag_values,
        ),
    }
    return config, workdir, launch, cache


_CONFIG, _WORKDIR, _LAUNCH, _CACHE = define_flags(flags.FLAGS)


def _config_keys(config, prefix="") -> list[str]:
    keys = []
    for key, value in config.items():
        keys += (
            _config_keys(value, f"{prefix}{key}.")
            if hasattr(value, "items")
            else [f"{prefix}{key}"]
        )
    return keys


def _flag_error(argv: list[str], error: Exception) -> str:
    """One line for a flag or config error: the unknown override key with the closest valid one, or
    the config file's own complaint."""
    config_arg = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
    overrides = [a[len("--config.") :].split("=", 1)[0] for a in argv if a.startswith("--config.")]
    # load the config alone (not through FLAGS): is an override's key unknown?
    if config_arg and overrides:
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
                hint = (
                    f"did you mean config.{close[0]}?"
                    if close
                    else f"the keys are listed in {config_arg.split(':')[0]}"
                )
                return f"unknown config key (config.{key}): {config_arg} has no such key; {hint}"
    why = (
        str(error).strip().splitlines()[-1].strip() if str(error).strip() else type(error).__name__
    )
    # absl names the override whose value does not parse
    key = re.search(r"flag --(config\.[\w.]+)=", why)
    where = key[1] if key else f"--config={config_arg}" if config_arg else "flags"
    if isinstance(error, OSError):
        return (
            f"cannot load the config file ({where}): {why}; pass --config=configs/<name>.py[:arg]"
        )
    return (
        f"bad flag or config value ({where}): {why}; see the config file's docstring for the "
        "accepted values"
    )


def parse_flags(argv: list[str], flag_values: flags.FlagValues = flags.FLAGS) -> list[str]:
    """absl's flag parsing (app.run's flags_parser), with every user error as one line and exit
    status 2."""
    try:
        rest = flag_values(argv)
        # a config file that fails to load raises on first use
        if flag_values["config"].value is not None:
            flag_values["config"].value.keys()
        return rest
    except Exception as e:  # noqa: BLE001 - flags.Error, AttributeError (an unknown key), the config's ValueError
        sys.stderr.write(f"error: {_flag_error(argv, e)}\n")
        sys.exit(EXIT_USAGE)


def _usage(where: str, why: str, todo: str):
    sys.stderr.write(f"error: bad command line ({where}): {why}; {todo}\n")
    sys.exit(EXIT_USAGE)


def quiet_logs(verbose: bool) -> None:
    """A run prints its own lines only: absl/orbax INFO lines, transformers' notices and deprecation
    warnings are off unless the command asked for them with absl's --verbosity (or -v)."""
    if verbose:
        return
    logging.set_verbosity(logging.WARNING)
    # orbax logs what ddjax reports itself as one line (a damaged or stray checkpoint folder), or
    # what does not matter to the result (a damaged _CHECKPOINT_METADATA, which holds no arrays)
    absl_logger = std_logging.getLogger("absl")
    if not any(f is drop_orbax_records for f in absl_logger.filters):
        absl_logger.addFilter(drop_orbax_records)
    # read when transformers is first imported
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.set_verbosity_error()
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    # trimesh (ddjax/data/readers.py) logs what it skips in a mesh (a material file not found);
    # ddjax refuses what matters in one line
    std_logging.getLogger("trimesh").setLevel(std_logging.ERROR)


def drop_orbax_records(record) -> bool:
    """A logging filter: False (dropped) for a record logged from orbax's code, and for tfds's
    notice that a folder dataset (ddjax/data/folder.py) has a config of its own name."""
    return f"{os.sep}orbax{os.sep}" not in record.pathname and not str(record.msg).startswith(
        "Using custom data configuration"
    )


def use_compilation_cache(enabled: bool = True, directory: str | None = None) -> None:
    """The persistent compilation cache on (or off), before anything compiles; a folder that cannot
    be written turns it off with one line on stderr (a cache never stops a job)."""
    if not enabled:
        compilation_cache.disable()
    elif compilation_cache.enable(directory) is None:
        where = directory or compilation_cache.default_dir()
        errors.note(
            f"compilation cache off ({where} cannot be created or written); pass "
            "--compilation_cache_dir=DIR or --nocompilation_cache"
        )
        compilation_cache.disable()


def run_job(
    argv: list[str],
    config,
    workdir,
    verbose: bool = False,
    launch: dict | None = None,
    cache: dict | None = None,
) -> None:
    """Runs the config's job (after joining the other processes named by `launch`, the launch flags'
    values), with the compilation cache `cache` ({'enabled', 'directory'}: the cache flags' values)
    on or off. A UserError exits with its one line; anything else is a bug in ddjax."""
    if len(argv) > 1:
        _usage(
            " ".join(argv[1:]),
            "unexpected arguments",
            "pass everything as --config=... and --workdir=...",
        )
    if config is None:
        _usage(
            "--config",
            "missing",
            "pass --config=configs/<name>.py[:arg], e.g. configs/kernels_demo.py:smoke",
        )
    if config.get("job") not in JOBS:
        _usage("config.job", f"{config.get('job')!r} is not a job", f"use one of {sorted(JOBS)}")
    quiet_logs(verbose)
    use_compilation_cache(**(cache or {}))
    try:
        # jax.distributed when asked; one line: backend, devices
        distributed.initialize(config, **(launch or {}))
        if jax.process_index() > 0:
            sys.stdout = open(os.devnull, "w")  # process 0 prints the progress and the results
        # one writer per run folder; convert builds its folder whole and renames it into place
        lock = workdir is not None and config.job not in UNLOCKED
        with run_folder.held(workdir) if lock else contextlib.nullcontext():
            if config.job in SPLIT_JOBS or jax.process_count() == 1:
                JOBS[config.job].run(config, workdir)
            else:
                try:
                    if distributed.is_writer():
                        JOBS[config.job].run(config, workdir)
                finally:  # the others wait for process 0, also when it fails
                    distributed.barrier(f"ddjax:{config.job} done")
    except (errors.UserError, OSError) as e:
        sys.stdout.flush()
        error = errors.from_os_error(e) if isinstance(e, OSError) else e
        sys.stderr.write(f"error: {error}\n")
        sys.exit(EXIT_USER_ERROR)
    except Exception as e:  # noqa: BLE001 - a bug: the traceback, then where to report it
        sys.stdout.flush()
        if (lost := distributed.collective_error(e)) is not None:
            sys.stderr.write(f"error: {lost}\n")
            sys.stderr.flush()
            # no clean shutdown: it would wait at a barrier for the partner that is gone
            os._exit(EXIT_USER_ERROR)
        traceback.print_exc()
        frame = traceback.extract_tb(e.__traceback__)[-1]
        sys.stderr.write(
            f"error: this is a bug in ddjax ({type(e).__name__} at "
            f"{frame.filename}:{frame.lineno}); "
            f"please report it on {errors.REPORT_BUGS} with the command and the traceback above\n"
        )
        sys.exit(EXIT_BUG)


def main(argv):
    run_job(
        argv,
        _CONFIG.value,
        _WORKDIR.value,
        verbose=flags.FLAGS["verbosity"].present > 0,
        launch={k: v.value for k, v in _LAUNCH.items()},
        cache={k: v.value for k, v in _CACHE.items()},
    )


def run_command(argv: list[str]) -> int:
    """The whole command in this process, with fresh flags (tests): its exit status."""
    flag_values = flags.FlagValues()
    config, workdir, launch, cache = define_flags(flag_values)
    # config_flags reads the --config.* overrides from sys.argv
    saved, sys.argv = sys.argv, ["main.py", *argv]
    try:
        rest = parse_flags(sys.argv, flag_values)
        run_job(
            rest,
            config.value,
            workdir.value,
            launch={k: v.value for k, v in launch.items()},
            cache={k: v.value for k, v in cache.items()},
        )
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    finally:
        sys.argv = saved
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
