"""What every job does first: start JAX's distributed runtime when asked, then say what it runs on."""
from __future__ import annotations

import os

import jax

from kernels import backend

COORDINATOR_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")


def initialize(config) -> str:
    """Starts `jax.distributed` when `config.distributed` is True, or "auto" (the default; only pretraining
    configs carry the key) and a coordinator address is set in the environment. Then prints and returns one
    line: JAX version, backend, device kind and count, processes, and the FPS/kNN implementations chosen.

    Call it once per process before any other JAX work; main.py does, for every job.
    """
    mode = config.get("distributed", "auto")
    if mode is True or (mode == "auto" and any(v in os.environ for v in COORDINATOR_VARIABLES)):
        jax.distributed.initialize()
    line = backend.describe()
    print(line, flush=True)
    return line
