"""Checks of config values, made before a job loads data or compiles anything: each raises
`ConfigError` naming the key (`config.<key>`), which main.py prints as one line.

`check_keys` refuses keys a job does not read (a misspelt or stale key would otherwise be ignored);
`parse_list` is the one parser of comma-separated config strings.
"""

from __future__ import annotations

import math
import os
from typing import Callable, Iterable

from ddjax.errors import ConfigError


def _value(config, key: str):
    value = config
    for part in key.split("."):
        value = value[part]
    return value


INT32 = (-(2**31), 2**31 - 1)  # steps, counts and sizes are int32 where they are used
FLOAT32_MAX = 3.4028234663852886e38  # model-side numbers are float32 where they are used


def check_int(config, key: str, low: int | None = None, high: int | None = None) -> int:
    """config.<key> as an int in [low, high], and within int32 (as it is used); ConfigError naming
    the key otherwise."""
    value = _value(config, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(key, f"must be an integer, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ConfigError(
            key,
            f"must be in [{low if low is not None else '-inf'}, "
            f"{high if high is not None else 'inf'}], got {value}",
        )
    if not INT32[0] <= value <= INT32[1]:
        raise ConfigError(
            key, f"{value} does not fit in int32 (how it is used): at most {INT32[1]}"
        )
    return value


def check_seed(config, key: str = "seed") -> int:
    """A seed: an int in [0, 2^31 - 1], what numpy and JAX both take."""
    return check_int(config, key, 0, INT32[1])


def check_number(
    config, key: str, low: float | None = None, high: float | None = None, *, low_open: bool = False
) -> float:
    """config.<key> as a finite number in [low, high] ((low, high] with low_open), and finite in
    float32 (as the model uses it)."""
    value = _value(config, key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(key, f"must be a finite number, got {value!r}")
    if low is not None and (value <= low if low_open else value < low):
        raise ConfigError(key, f"must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(key, f"must be <= {high}, got {value}")
    if abs(value) > FLOAT32_MAX:
        raise ConfigError(key, f"{value} overflows float32 (how the model uses it)")
    return float(value)


def check_choice(config, key: str, choices) -> str:
    value = _value(config, key)
    if value not in choices:
        raise ConfigError(key, f"must be one of {list(choices)}, got {value!r}")
    return value


def check_divisible(config, key: str, devices: int) -> None:
    value = _value(config, key)
    if value % devices:
        raise ConfigError(
            key,
            f"{value} is not divisible by the {devices} devices of the data mesh",
            f"use a multiple of {devices}",
        )


def check_run_dir(config, key: str = "checkpoint") -> str:
    """config.<key> names an existing pretraining run folder (one with config.json)."""
    value = _value(config, key)
    if not value:
        raise ConfigError(
            key, "no run folder given", f"pass --config.{key}=RUN_DIR (a configs/pretrain.py run)"
        )
    path = os.path.expanduser(value)
    if not os.path.isdir(path):
        raise ConfigError(
            key,
            f"{value} does not exist or is not a folder",
            f"pass --config.{key}=RUN_DIR (a configs/pretrain.py run)",
        )
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise ConfigError(
            key,
            f"{value} is not a pretraining run folder (no config.json)",
            f"pass --config.{key}=RUN_DIR (a configs/pretrain.py run)",
        )
    return value


def require_workdir(workdir: str | None, job: str, writes: str) -> None:
    if not workdir:
        raise ConfigError("--workdir", f"the {job} job writes {writes}", "pass --workdir=DIR")


def refuse_run_folder(workdir: str, job: str) -> None:
    """An evaluation job never writes into a pretraining or conversion run folder (one holding
    config.json, e.g. the checkpoint's own): that run's results (its zeroshot.json) would be
    overwritten."""
    if os.path.isfile(os.path.join(os.path.expanduser(workdir), "config.json")):
        raise ConfigError(
            "--workdir",
            f"{workdir} is the run folder of a pretraining or conversion (it holds config.json); "
            f"the {job} job would overwrite that run's results",
            f"pass another --workdir, e.g. {os.path.join(workdir, job)}",
        )


def check_keys(config, known: dict[str, Iterable[str]], extra: Iterable[str] = ()) -> None:
    """ConfigError unless every key of `config` is read by the job: `known` maps a section ('' for
    the top level, e.g. 'eval' for config.eval) to the keys read there; `extra` are further dotted
    keys found unread by the caller (e.g. 'model.x'). The message is the trainer's: it lists every
    unread key."""
    unread = [k for k in config.keys() if k not in known[""]]
    for section, keys in known.items():
        if section and section in config:
            unread += [f"{section}.{k}" for k in config[section].keys() if k not in keys]
    unread += list(extra)
    if unread:
        raise ConfigError(
            sorted(unread)[0],
            f"nothing reads the keys {sorted(unread)} (misspelt or stale?)",
            "remove them from the config file",
        )


def refuse_repeats(key: str, values: list) -> list:
    """`values` of config.<key>, unless one is listed twice (a repeated setting, attack or epsilon
    would be run twice and reported as two rows of one result)."""
    repeated = sorted({str(v) for i, v in enumerate(values) if v in values[:i]})
    if repeated:
        raise ConfigError(key, f"{', '.join(repeated)} listed more than once", "list each once")
    return values


def parse_list(
    config,
    key: str,
    kind: Callable = float,
    *,
    what: str | None = None,
    example: str | None = None,
    allow_empty: bool = False,
    finite: bool = True,
) -> list:
    """config.<key>, a comma-separated string ('0,0.1,0.25'), as a list of `kind` (float, int, str
    or a parser raising ValueError); ConfigError naming the key for an item `kind` refuses, a
    non-finite float, a repeated item (`refuse_repeats`) or an empty list (unless `allow_empty`;
    `finite=False` leaves non-finite floats to the caller's own check). `what` names the items in
    the message (default: kind's name), `example` is the advice."""
    text = str(_value(config, key))
    todo = f"e.g. --config.{key}={example}" if example else None
    try:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(
            key, f"{text!r} is not a comma-separated list of {what or kind.__name__}", todo
        ) from None
    if not values and not allow_empty:
        raise ConfigError(key, "empty list", todo)
    if finite and any(isinstance(v, float) and not math.isfinite(v) for v in values):
        raise ConfigError(key, f"{text!r} holds a non-finite number", todo)
    return refuse_repeats(key, values)
