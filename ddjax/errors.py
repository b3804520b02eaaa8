"""The user's mistakes, as one line: `error: <what> (<file or config key>): <why>; <what to do>`.

Every error that a user can cause (a config value, an input file, dataset files, a checkpoint, a run folder)
is a `UserError`; main.py prints it as that one line and exits with status 1. Any other exception is a bug in
ddjax: main.py prints its traceback and a line saying so. The `check_*` helpers validate config values
before a job loads data or compiles anything; each raises `ConfigError` naming the key.
"""
from __future__ import annotations

import math
import os

REPORT_BUGS = "ddjax's issue tracker"  # where main.py's bug line sends the user


def one_line(text) -> str:
    """`text` with its lines joined by '; ' (an exception's message can span lines)."""
    return "; ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


class UserError(ValueError):
    """`what` (the kind of failure) and `todo` (the default advice) are per subclass; `where` names the
    file (path[:line]) or config key, `why` says what is wrong."""
    what = "cannot continue"
    todo = "see the README"

    def __init__(self, where, why: str, todo: str | None = None):
        self.where, self.why, self.todo = os.fspath(where), one_line(why), one_line(todo or self.todo)
        super().__init__(f"{self.what} ({self.where}): {self.why}; {self.todo}")


class ConfigError(UserError):
    what = "bad config value"
    todo = "the config file's docstring lists the accepted values"

    def __init__(self, key: str, why: str, todo: str | None = None):
        super().__init__(key if key.startswith(("config.", "--")) else f"config.{key}", why, todo)


class CheckpointError(UserError):
    what = "cannot use the checkpoint"
    todo = "pass --config.checkpoint=RUN_DIR of a finished configs/pretrain.py run (or resume that run)"


def _value(config, key: str):
    value = config
    for part in key.split("."):
        value = value[part]
    return value


def check_int(config, key: str, low: int | None = None, high: int | None = None) -> int:
    """config.<key> as an int in [low, high]; ConfigError naming the key otherwise."""
    value = _value(config, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(key, f"must be in [{low if low is not None else '-inf'}, "
                               f"{high if high is not None else 'inf'}], got {value}")
    return value


def check_number(config, key: str, low: float | None = None, high: float | None = None, *,
                 low_open: bool = False) -> float:
    """config.<key> as a finite number in [low, high] ((low, high] with low_open)."""
    value = _value(config, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(key, f"must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(key, f"must be <= {high}, got {value}")
    return float(value)


def check_choice(config, key: str, choices) -> str:
    value = _value(config, key)
    if value not in choices:
        raise ConfigError(key, f"must be one of {list(choices)}, got {value!r}")
    return value


def check_divisible(config, key: str, devices: int) -> None:
    value = _value(config, key)
    if value % devices:
        raise ConfigError(key, f"{value} is not divisible by the {devices} devices of the data mesh",
                          f"use a multiple of {devices}")


def check_run_dir(config, key: str = "checkpoint") -> str:
    """config.<key> names an existing pretraining run folder (one with config.json)."""
    value = _value(config, key)
    if not value:
        raise ConfigError(key, "no run folder given", f"pass --config.{key}=RUN_DIR (a configs/pretrain.py run)")
    path = os.path.expanduser(value)
    if not os.path.isdir(path):
        raise ConfigError(key, f"{value} does not exist or is not a folder",
                          f"pass --config.{key}=RUN_DIR (a configs/pretrain.py run)")
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(key, f"{value} is not a pretraining run folder (no config.json)",
                          f"pass --config.{key}=RUN_DIR (a configs/pretrain.py run)")
    return value


def require_workdir(workdir: str | None, job: str, writes: str) -> None:
    if not workdir:
        raise ConfigError("--workdir", f"the {job} job writes {writes}", "pass --workdir=DIR")
