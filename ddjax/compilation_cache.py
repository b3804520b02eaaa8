"""JAX's persistent compilation cache, on for every job (README, "Compilation cache").

A compiled program is stored on disk keyed by its StableHLO, the compile options, the JAX/XLA
version and the device, so a resumed run, a second evaluation of the same run or a rerun of a
benchmark loads it instead of compiling again (seconds on a CPU, minutes for an unscanned model on a
GPU). Where it lives, in this order:

  1. `--compilation_cache_dir=DIR` (main.py), or `directory=` here;
  2. `$JAX_COMPILATION_CACHE_DIR`, JAX's own variable (so a cluster's shared setting is kept);
  3. `$XDG_CACHE_HOME/ddjax/jax-compilation-cache`, by default
     `~/.cache/ddjax/jax-compilation-cache`.

`--nocompilation_cache` turns it off. Only programs that took at least `min_compile_time_s` (JAX's
default, 1 s; its variable JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS is read) to compile are
stored, so the folder holds the expensive programs, not every small helper. The cache is safe for
several processes at once (JAX writes each entry atomically) and can be deleted at any time.
"""

from __future__ import annotations

import os
import pathlib

import jax

ENV = "JAX_COMPILATION_CACHE_DIR"


def default_dir() -> pathlib.Path:
    """$JAX_COMPILATION_CACHE_DIR, else $XDG_CACHE_HOME (or ~/.cache) / ddjax /
    jax-compilation-cache."""
    if os.environ.get(ENV):
        return pathlib.Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "ddjax" / "jax-compilation-cache"


def enable(
    directory: str | os.PathLike | None = None, *, min_compile_time_s: float | None = None
) -> pathlib.Path | None:
    """Turns the persistent cache on in `directory` (default `default_dir()`); returns the folder,
    or None when it cannot be created (then nothing is cached: a cache must never stop a job).
    `min_compile_time_s`: only programs that took this long are stored (default:
    $JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS, else 1 s). Call it before the first compilation of
    the process."""
    if min_compile_time_s is None:
        min_compile_time_s = float(
            os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", 1.0)
        )
    path = pathlib.Path(directory).expanduser() if directory else default_dir()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(path, os.W_OK):
        return None
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_time_s))
    return path


def disable() -> None:
    """No persistent cache in this process (also when $JAX_COMPILATION_CACHE_DIR is set)."""
    jax.config.update("jax_enable_compilation_cache", False)
