"""Helpers shared by the config files: parsing the `:arg` suffix of `--config=configs/x.py:arg`."""

from __future__ import annotations

import ml_collections


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """Parses 'smoke,seed=3' into {'smoke': True, 'seed': 3} over `defaults` (big_vision's
    parse_arg).

    A bare word sets a boolean default to True; key=value is converted to the default's type.
    Unknown keys raise, naming the key and the known ones.
    """
    result = ml_collections.ConfigDict(dict(defaults))
    if not arg:
        return result
    for item in arg.split(","):
        if not item:
            continue
        key, has_value, value = item.partition("=")
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
        default = defaults[key]
        if not has_value:
            if not isinstance(default, bool):
                raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
            result[key] = True
        elif isinstance(default, bool):
            if value.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError(
                    f"config argument {key!r} is a boolean (true/false), got {value!r}"
                )
            result[key] = value.lower() in ("1", "true", "yes")
        else:
            try:
                result[key] = type(default)(value)
            except ValueError:
                raise ValueError(
                    f"config argument {key!r} must be {type(default).__name__}, got {value!r}"
                ) from None
    return result
