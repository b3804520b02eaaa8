"""The user's mistakes, as one line: `error: <what> (<file or config key>): <why>; <what to do>`.

Every error that a user can cause (a config value, an input file, dataset files, a checkpoint, a run
folder) is a `UserError`; main.py prints it as that one line and exits with status 1. Any other
exception is a bug in ddjax: main.py prints its traceback and a line saying so. The checks of config
values that raise `ConfigError` live in ddjax/config_checks.py.
"""

from __future__ import annotations

import os

REPORT_BUGS = "ddjax's issue tracker"  # where main.py's bug line sends the user


def one_line(text) -> str:
    """`text` with its lines joined by '; ' (an exception's message can span lines)."""
    return "; ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


class UserError(ValueError):
    """`what` (the kind of failure) and `todo` (the default advice) are per subclass; `where` names
    the file (path[:line]) or config key, `why` says what is wrong."""

    what = "cannot continue"
    todo = "see the README"

    def __init__(self, where, why: str, todo: str | None = None):
        self.where, self.why, self.todo = (
            os.fspath(where),
            one_line(why),
            one_line(todo or self.todo),
        )
        super().__init__(f"{self.what} ({self.where}): {self.why}; {self.todo}")


class ConfigError(UserError):
    what = "bad config value"
    todo = "the config file's docstring lists the accepted values"

    def __init__(self, key: str, why: str, todo: str | None = None):
        super().__init__(key if key.startswith(("config.", "--")) else f"config.{key}", why, todo)


class CheckpointError(UserError):
    what = "cannot use the checkpoint"
    todo = (
        "pass --config.checkpoint=RUN_DIR of a finished configs/pretrain.py run (or resume that "
        "run)"
    )
