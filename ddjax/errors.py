"""The user's mistakes, as one line: `error: <what> (<file or config key>): <why>; <what to do>`.

Every error that a user can cause (a config value, an input file, dataset files, a checkpoint, a run
folder) is a `UserError`; main.py prints it as that one line and exits with status 1. Any other
exception is a bug in ddjax: main.py prints its traceback and a line saying so. The checks of config
values that raise `ConfigError` live in ddjax/config_checks.py.
"""

from __future__ import annotations

import errno
import os
import sys

REPORT_BUGS = "ddjax's issue tracker"  # where main.py's bug line sends the user


def one_line(text) -> str:
    """`text` with its lines joined by '; ' (an exception's message can span lines)."""
    return "; ".join(part.strip() for part in str(text).strip().splitlines() if part.strip())


def note(line: str) -> None:
    """The other kind of line: a fault ddjax handled while the command goes on (a damaged log line
    skipped, a stray folder removed), on stderr as `note: <line>`."""
    sys.stderr.write(f"note: {line}\n")


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


class FileSystemError(UserError):
    """An operating-system fault on a file or folder (`from_os_error`)."""

    what = "cannot read or write"
    todo = "check the path, its permissions and the disk"


# errno -> what to do about it
_OS_ADVICE = {
    errno.ENOSPC: "free space on that disk, or pass a --workdir on another one",
    errno.EDQUOT: "free space within your disk quota, or pass a --workdir elsewhere",
    errno.EROFS: "that file system is read-only: pass a --workdir on a writable one",
    errno.EACCES: "you lack the permission: change it, or pass a --workdir you own",
    errno.EPERM: "the operation is not permitted there: pass a --workdir you own",
    errno.EEXIST: "a file is in the way: remove it, or pass another --workdir",
    errno.ENOTDIR: "a file stands where a folder must be: pass another --workdir",
    errno.EISDIR: "a folder stands where a file must be: pass another path",
    errno.EFBIG: "a file grew past the file-size limit (ulimit -f): raise it",
    errno.ELOOP: "the path has a symbolic-link loop: fix the link",
    errno.ENAMETOOLONG: "shorten the path",
    errno.ENOENT: "check the path",
}


def from_os_error(e: OSError) -> FileSystemError:
    """The one line for an OSError: the file it names, the system's reason and what to do."""
    where = e.filename if e.filename is not None else "the operating system"
    if e.filename2 is not None:
        where = f"{where} -> {e.filename2}"
    reason = e.strerror or type(e).__name__
    return FileSystemError(where, f"{reason} [errno {e.errno}]", _OS_ADVICE.get(e.errno))
