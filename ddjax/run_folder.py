"""A run folder's integrity: atomic writes, the config it was created with, and paths relative to
it.

A pretraining run folder records its config in `config.json` the first time a job writes into it. A
later command on the same folder that changes a key which shapes the model, the data or the
optimisation is refused before anything is written (`check_same_run`), with one line listing the
differing keys and both values. Keys where continuing is meaningful (`CONTINUABLE`, e.g.
`total_steps` to train longer) are accepted when named in `--config.allow_changes`; keys that do not
change what the run means (`FREE`: logging, checkpoint cadence, loader workers, where data lives,
the evaluation after training) may always change.

Every file a job writes is written atomically (`write_text`, `write_bytes`, `save_npy`: a temporary
name in the same folder, then `os.replace`), so a killed job leaves either the old or the new file.
With several JAX processes only process 0 writes them (README, "Several hosts"); the others' writes
are no-ops.

A job that works unit by unit (attack, certify) records each finished unit (`FinishedUnits`), so a
killed job run again with the same config continues where it stopped.

One writer at a time: every job that writes into a run folder holds an advisory lock (`held`,
`flock` on the folder's `.lock` file, which records the holder's process id, host and start time)
for as long as it runs. A second writer is refused at once with one line naming the holder. The
operating system releases the lock when its process ends, killed or not, so a lock file left behind
never blocks the next run. Readers (a job evaluating another run's checkpoint) take no lock.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import pathlib
import socket
import tempfile

import numpy as np

from ddjax import distributed, errors

# Keys that never change what a run means.
FREE = (
    "log_every",
    "checkpoint_every",
    "keep_checkpoints",
    "worker_count",
    "data_dir",
    "auto_prepare",
    "distributed",
    "init_from",
    "allow_changes",
    "eval",
    "teacher_cache",
    "tiny_teacher.tokenizer_dir",
    # remat trades memory for compute, same values (and runs made before it lack the key)
    "model.remat",
)
# Keys added after runs were recorded, as JSON, with the value a record without them means (the
# model's default then: tokenizer.PATCH_WIDTHS); a record lacking one differs only from another
# value.
ADDED = {"model.patch_widths": [128, 256, 512]}
# Keys a run may continue under a new value when the command names them in --config.allow_changes.
CONTINUABLE = ("total_steps", "epochs")
RELATIVE = "./"  # prefix of a stored path that lies inside the run folder
LOCK = ".lock"  # the run folder's lock file (`held`)


class RunFolderError(errors.UserError):
    """A command would change what an existing run folder means: RunFolderError(folder, why, what to
    do)."""

    what = "refused to write into the run folder"
    todo = "start a new run with another --workdir"


class RunFolderInUse(errors.UserError):
    what = "the run folder is in use"
    todo = "wait for that process to finish (or stop it), or pass another --workdir"


def _first_missing(path: pathlib.Path) -> pathlib.Path | None:
    """The outermost folder of `path` that does not exist yet (None if `path` exists)."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists() or folder.is_symlink():
            break
        missing = folder
    return missing


def _remove_created(path: pathlib.Path, top: pathlib.Path) -> None:
    """Removes the folders from `path` up to `top` that a refused or failed job created and left
    holding nothing but the lock file."""
    with contextlib.suppress(OSError):
        (path / LOCK).unlink()
        for folder in (path, *path.parents):
            folder.rmdir()  # only empty folders go
            if folder == top:
                break


@contextlib.contextmanager
def held(workdir):
    """Holds the run folder `workdir` (created if missing) for one writer while the block runs:
    RunFolderInUse (one line, naming the holder) if another process holds it. A folder this call
    created is removed again if the block fails and left nothing in it. Only process 0 locks; the
    others write nothing (see `atomic_write`). OSErrors (a file in the way, no permission, a
    read-only disk) propagate for main.py's one line."""
    path = pathlib.Path(workdir).expanduser().absolute()
    if not distributed.is_writer():
        yield
        return
    top = _first_missing(path)
    if path.exists() and not path.is_dir():
        raise RunFolderError(path, "exists and is not a folder", "pass another --workdir")
    path.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError:
        if top is not None:
            _remove_created(path, top)
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "unknown"
            raise RunFolderInUse(path, f"another ddjax job writes into it ({holder})") from None
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(
            fd, f"process {os.getpid()} on {socket.gethostname()}, started {started}".encode(), 0
        )
        try:
            yield
        except BaseException:
            if top is not None:
                _remove_created(path, top)
            raise
    finally:
        os.close(fd)  # releases the lock


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write) -> None:
    """`write(file)` into a temporary file beside `path`, then renamed onto it (process 0 only)."""
    if not distributed.is_writer():  # outputs are written once, by process 0
        return
    path = pathlib.Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.chmod(tmp, 0o666 & ~_umask())  # what open() would have given, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.filename in (None, tmp):  # name the file being written
            raise OSError(e.errno, e.strerror, os.fspath(path)) from e
        raise


def write_bytes(path, data: bytes) -> None:
    """Writes `data` to `path` atomically (a temporary file in the same folder, then a rename)."""
    atomic_write(path, lambda f: f.write(data))


def write_text(path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def save_npy(path, array) -> None:
    """np.save, atomically; never pickles."""
    atomic_write(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists stay values."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _matches(key: str, names) -> bool:
    return any(key == n or key.startswith(n + ".") for n in names)


def differences(recorded: dict, current: dict) -> list[tuple[str, object, object]]:
    """(key, recorded value, current value) for every key, nested as 'model.width', whose value
    differs (a key only one side has counts, with the value '(absent)', except a key of ADDED that
    the record lacks: it has ADDED's value); 'resolved' is not config.
    """
    old = flatten({k: v for k, v in recorded.items() if k != "resolved"})
    new = flatten({k: v for k, v in current.items() if k != "resolved"})
    old = {k: v for k, v in ADDED.items() if k in new} | old  # what an older record meant
    absent = "(absent)"
    return [
        (k, old.get(k, absent), new.get(k, absent))
        for k in sorted(set(old) | set(new))
        if old.get(k, absent) != new.get(k, absent)
    ]


def parse_allowed(text: str) -> list[str]:
    allowed = [k.strip() for k in str(text).split(",") if k.strip()]
    bad = [k for k in allowed if k not in CONTINUABLE]
    if bad:
        raise errors.ConfigError(
            "allow_changes",
            f"{bad} cannot change in an existing run",
            f"only {list(CONTINUABLE)} can be listed",
        )
    return allowed


def check_same_run(workdir, config_json: dict) -> None:
    """RunFolderError if WORKDIR/config.json records a config that differs from `config_json` (the
    new command's config as JSON) in a key outside FREE, unless the key is CONTINUABLE and named in
    its `allow_changes`. Writes nothing."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        return
    try:
        recorded = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise RunFolderError(
            path,
            f"this run folder's record is unreadable ({errors.one_line(e)}); nothing was written",
            "use another --workdir",
        ) from None
    allowed = parse_allowed(config_json.get("allow_changes", ""))
    changed = [(k, a, b) for k, a, b in differences(recorded, config_json) if not _matches(k, FREE)]
    refused = [(k, a, b) for k, a, b in changed if k not in allowed]
    if refused:
        listed = ", ".join(f"{k}: {json.dumps(a)} -> {json.dumps(b)}" for k, a, b in refused)
        continuable = [k for k, _, _ in refused if k in CONTINUABLE]
        hint = (
            f", or continue this run with --config.allow_changes={','.join(continuable)}"
            if continuable and len(continuable) == len(refused)
            else ""
        )
        raise RunFolderError(
            workdir,
            f"this run was created with a different config ({listed}); nothing was written",
            f"start a new run with another --workdir{hint}",
        )


def store_path(workdir, path: str) -> str:
    """`path` as a run folder stores it: './...' relative to the folder when it lies inside it, else
    as is (a hub name or an outside directory)."""
    try:
        inside = pathlib.Path(path).resolve().relative_to(pathlib.Path(workdir).resolve())
    except (ValueError, OSError):
        return path
    return RELATIVE + inside.as_posix()


def resolve_path(workdir, stored: str) -> str:
    """The inverse of `store_path`: './...' resolved against the run folder (wherever it now is)."""
    if stored.startswith(RELATIVE):
        return str(pathlib.Path(workdir).expanduser().resolve() / stored[len(RELATIVE) :])
    return stored


class FinishedUnits:
    """The finished units of a unit-by-unit job (attack, certify) in DIR/<name>_progress.jsonl,
    keyed by the config that produced them: a killed job run again with the same config skips them.
    """

    def __init__(self, path: pathlib.Path, config_digest: str):
        self.path, self.digest, self.done = path, config_digest, {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut off by a kill
                if entry.get("config") == config_digest:
                    self.done[entry["unit"]] = entry["result"]

    def add(self, unit: str, result: dict) -> None:
        self.done[unit] = result
        if not distributed.is_writer():  # every process holds the result; process 0 records it
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"config": self.digest, "unit": unit, "result": result}) + "\n")
            f.flush()
            os.fsync(f.fileno())
