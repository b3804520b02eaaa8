"""What every job does first: start JAX's distributed runtime when asked, then say what it runs on.

Several processes (hosts, or terminals on one machine) run the same command; `initialize` joins them:
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I   explicit (every process the same address
                                                                    and N, each its own I)
  none of the three, inside Slurm (srun), Open MPI (mpirun), a Cloud TPU pod or GKE
                                                                    JAX's own cluster detection fills them in
  JAX_COORDINATOR_ADDRESS in the environment                        the same, from JAX's variables
A pretraining config's `distributed` key ("auto", True, False) can force or forbid the automatic start.
On CPU the processes' collectives go through gloo (README, "Several hosts").
"""
from __future__ import annotations

import os

import jax

from ddjax import errors
from kernels import backend

COORDINATOR_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
INITIALIZATION_TIMEOUT_S = 300  # how long a process waits for the others to join


class LaunchError(errors.UserError):
    what = "cannot start the processes"
    todo = ("give every process the same --coordinator_address=HOST:PORT and --num_processes=N, and each its own "
            "--process_id in 0..N-1 (README, 'Several hosts')")


def detected_cluster() -> str | None:
    """The name of the cluster environment JAX's auto-detection recognises here (Slurm, Open MPI, Cloud TPU,
    GKE, Kubernetes), or None."""
    try:
        from jax._src.clusters import ClusterEnv  # JAX's own detection; private, so guarded
    except ImportError:  # pragma: no cover - a JAX without it: explicit flags still work
        return None
    for env in ClusterEnv._cluster_types:
        if not env.opt_in_only_method and env.is_env_present():
            return env.__name__
    return None


def check_launch(coordinator_address: str | None, num_processes: int | None, process_id: int | None) -> bool:
    """Validates the three launch flags; True when they ask for an explicit multi-process start."""
    given = {"--coordinator_address": coordinator_address, "--num_processes": num_processes,
             "--process_id": process_id}
    if all(v is None for v in given.values()):
        return False
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise LaunchError(missing[0], f"{', '.join(k for k in given if given[k] is not None)} given without "
                          f"{', '.join(missing)}")
    host, _, port = str(coordinator_address).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LaunchError("--coordinator_address", f"{coordinator_address!r} is not HOST:PORT",
                          "e.g. --coordinator_address=localhost:12355 (process 0's host, a free port)")
    if num_processes < 1:
        raise LaunchError("--num_processes", f"must be at least 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise LaunchError("--process_id", f"must be in 0..{num_processes - 1} (--num_processes={num_processes}), "
                          f"got {process_id}")
    return True


def initialize(config, *, coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> str:
    """Joins the other processes (explicit flags, else JAX's cluster detection or its environment variables,
    unless `config.distributed` is False), then prints and returns one line: JAX version, backend, device
    kind and count, processes, and the FPS/kNN implementations chosen.

    Call it once per process before any other JAX work; main.py does, for every job.
    """
    explicit = check_launch(coordinator_address, num_processes, process_id)
    mode = config.get("distributed", "auto")
    automatic = mode is True or (mode == "auto" and (any(v in os.environ for v in COORDINATOR_VARIABLES)
                                                     or detected_cluster() is not None))
    if explicit or automatic:
        # gloo carries the collectives between CPU processes (JAX's default since 0.5; set so it stays so).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        kwargs = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                      process_id=process_id) if explicit else {}
        try:
            jax.distributed.initialize(initialization_timeout=INITIALIZATION_TIMEOUT_S, **kwargs)
        except (RuntimeError, ValueError) as e:  # unreachable coordinator, a timeout, a taken port
            where = f"--coordinator_address={coordinator_address}" if explicit else (detected_cluster() or "env")
            raise LaunchError(where, f"jax.distributed.initialize failed: {errors.one_line(e)[:300]}") from None
    line = backend.describe()
    if jax.process_index() == 0:
        print(line, flush=True)
    return line
