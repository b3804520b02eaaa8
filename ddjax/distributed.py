"""Several JAX processes (hosts, or terminals on one machine): starting them, and sharing work
between them.

Starting (`initialize`, what every job does first): the same command runs in every process, joined
by
  --coordinator_address=HOST:PORT --num_processes=N --process_id=I
      explicit (every process the same address and N, each its own I);
  none of the three, inside Slurm (srun), Open MPI (mpirun), a Cloud TPU pod or GKE
      JAX's own cluster detection fills them in;
  JAX_COORDINATOR_ADDRESS in the environment
      the same, from JAX's variables.
A pretraining config's `distributed` key ("auto", True, False) can force or forbid the automatic
start. On CPU the processes' collectives go through gloo (README, "Several hosts").

Sharing: who writes, waiting for each other, and splitting a list of items (zero-shot batches,
attacked batches) over every device of every process with the results gathered back. With one
process every function is the obvious no-op, so the jobs call them unconditionally. The rule for
outputs: every process computes, process 0 alone writes (`is_writer`); the run folder lies on a file
system all processes see (orbax's checkpoints need that too).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from typing import Callable

import jax
import numpy as np
from jax.experimental import multihost_utils
from orbax.checkpoint import multihost

from ddjax import errors
from kernels import backend

COORDINATOR_VARIABLES = ("JAX_COORDINATOR_ADDRESS", "COORDINATOR_ADDRESS")
INITIALIZATION_TIMEOUT_S = 300  # how long a process waits for the others to join


class LaunchError(errors.UserError):
    what = "cannot start the processes"
    todo = (
        "give every process the same --coordinator_address=HOST:PORT and --num_processes=N, and "
        "each its own "
        "--process_id in 0..N-1 (README, 'Several hosts')"
    )


def detected_cluster() -> str | None:
    """The name of the cluster environment JAX's auto-detection recognises here (Slurm, Open MPI,
    Cloud TPU, GKE, Kubernetes), or None."""
    try:
        from jax._src.clusters import ClusterEnv  # noqa: PLC0415 - JAX's own detection; private, so guarded
    except ImportError:  # pragma: no cover - a JAX without it: explicit flags still work
        return None
    for env in ClusterEnv._cluster_types:
        if not env.opt_in_only_method and env.is_env_present():
            return env.__name__
    return None


def _give_up(error: errors.UserError) -> None:
    """The start-up watchdog's end: main.py's one line and exit status 1, from any thread."""
    sys.stdout.flush()
    sys.stderr.write(f"error: {error}\n")
    sys.stderr.flush()
    os._exit(1)


def waiting_line(address, num_processes, process_id, timeout: int) -> str:
    """What a starting process prints while it waits for the others."""
    if address is None:  # JAX's cluster detection or its environment variables
        address = next((os.environ[v] for v in COORDINATOR_VARIABLES if v in os.environ), None)
        address = address or f"the coordinator {detected_cluster() or 'of this cluster'} names"
    who = f"process {process_id} of {num_processes}" if num_processes else "this process"
    return (
        f"{who}: waiting for all processes to join at {address} "
        f"(up to {timeout} s, --startup_timeout)"
    )


def check_launch(
    coordinator_address: str | None, num_processes: int | None, process_id: int | None
) -> bool:
    """Validates the three launch flags; True when they ask for an explicit multi-process start."""
    given = {
        "--coordinator_address": coordinator_address,
        "--num_processes": num_processes,
        "--process_id": process_id,
    }
    if all(v is None for v in given.values()):
        return False
    missing = [k for k, v in given.items() if v is None]
    if missing:
        raise LaunchError(
            missing[0],
            f"{', '.join(k for k in given if given[k] is not None)} given without "
            f"{', '.join(missing)}",
        )
    host, _, port = str(coordinator_address).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise LaunchError(
            "--coordinator_address",
            f"{coordinator_address!r} is not HOST:PORT",
            "e.g. --coordinator_address=localhost:12355 (process 0's host, a free port)",
        )
    if num_processes < 1:
        raise LaunchError("--num_processes", f"must be at least 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise LaunchError(
            "--process_id",
            f"must be in 0..{num_processes - 1} (--num_processes={num_processes}), "
            f"got {process_id}",
        )
    return True


def initialize(
    config,
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    startup_timeout: int = INITIALIZATION_TIMEOUT_S,
) -> str:
    """Joins the other processes (explicit flags, else JAX's cluster detection or its environment
    variables, unless `config.distributed` is False), then prints and returns one line: JAX version,
    backend, device kind and count, processes, and the FPS/kNN implementations chosen.

    While it waits for the others, each process says so on stderr (whom it waits for, its own
    index); after `startup_timeout` seconds without all of them it gives up with one line.

    Call it once per process before any other JAX work; main.py does, for every job.
    """
    explicit = check_launch(coordinator_address, num_processes, process_id)
    mode = config.get("distributed", "auto")
    automatic = mode is True or (
        mode == "auto"
        and (any(v in os.environ for v in COORDINATOR_VARIABLES) or detected_cluster() is not None)
    )
    if explicit or automatic:
        # gloo carries the collectives between CPU processes (JAX's default since 0.5; set so it
        # stays so).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        kwargs = (
            dict(
                coordinator_address=coordinator_address,
                num_processes=num_processes,
                process_id=process_id,
            )
            if explicit
            else {}
        )
        if not isinstance(startup_timeout, int) or startup_timeout < 1:
            raise LaunchError("--startup_timeout", f"{startup_timeout!r} is not a positive number")
        print(
            waiting_line(coordinator_address, num_processes, process_id, startup_timeout),
            file=sys.stderr,
            flush=True,
        )
        # JAX aborts the process (a C++ fatal error, with a stack dump) when its own timeout
        # expires; a watchdog that fires first gives the one line and exit status 1 instead.
        failed = LaunchError(
            "--startup_timeout",
            f"not all {num_processes or 'the'} processes joined within {startup_timeout} s "
            f"at {coordinator_address or 'the detected coordinator'}",
            "start every process with the same --coordinator_address and --num_processes (each "
            "its own --process_id), or wait longer with --startup_timeout=SECONDS",
        )
        watchdog = threading.Timer(startup_timeout, _give_up, (failed,))
        watchdog.daemon = True
        watchdog.start()
        try:
            jax.distributed.initialize(initialization_timeout=startup_timeout + 60, **kwargs)
        except (RuntimeError, ValueError) as e:  # unreachable coordinator, a timeout, a taken port
            where = (
                f"--coordinator_address={coordinator_address}"
                if explicit
                else (detected_cluster() or "env")
            )
            raise LaunchError(
                where,
                f"the processes did not all join within {startup_timeout} s, or the coordinator is "
                f"unreachable (jax.distributed.initialize: {errors.one_line(e)[:200]})",
                "start every process with the same --coordinator_address and --num_processes "
                "(each its own --process_id), or wait longer with --startup_timeout=SECONDS",
            ) from None
        finally:
            watchdog.cancel()
    line = backend.describe()
    if jax.process_index() == 0:
        print(line, flush=True)
    return line


# ----------------------------------------------------------------------------------------------
# sharing work
# a barrier that waits on process 0's work (preparing ShapeNet, a teacher)
BARRIER_TIMEOUT_S = 24 * 3600


def is_writer() -> bool:
    """True in the process that writes outputs (process 0)."""
    return jax.process_index() == 0


def barrier(name: str, timeout_s: int = BARRIER_TIMEOUT_S) -> None:
    """Waits until every process reaches the barrier `name` (no-op with one process), for up to
    `timeout_s`. It meets through JAX's coordination service, not through a collective (orbax's
    sync_global_processes runs one, which gives up on a partner late by more than XLA's collective
    timeout, whatever timeout it is passed). Every process passes the same barriers in the same
    order, so the n-th barrier has the same key everywhere."""
    if jax.process_count() > 1:
        key = f"{name}#{next(_BARRIER_COUNT)}"
        multihost.get_barrier_sync_fn()(key=key, timeout_ms=timeout_s * 1000)


_BARRIER_COUNT = itertools.count()  # a barrier key is used once


class CollectiveError(errors.UserError):
    what = "the processes lost each other"
    todo = (
        "one process stalled, fell behind or died: read its own output; on CPU a collective waits "
        "for a late partner as long as XLA_FLAGS=--xla_cpu_collective_timeout_seconds=SECONDS "
        "allows"
    )


# What the runtime says when processes miss each other at a collective or at a barrier.
_COLLECTIVE_FAULTS = (
    "Gloo",
    "GetKeyValue() timed out",
    "Barrier timed out",
    "DEADLINE_EXCEEDED",
    "Connection closed by peer",
    "Connection reset by peer",
)


def collective_error(error: BaseException) -> CollectiveError | None:
    """The one-line error for a runtime error of a multi-process job whose processes missed each
    other (a collective's or a barrier's timeout, a partner gone), else None (a bug)."""
    text = errors.one_line(error)
    if jax.process_count() < 2 or not any(fault in text for fault in _COLLECTIVE_FAULTS):
        return None
    return CollectiveError(
        f"process {jax.process_index()} of {jax.process_count()}",
        f"{type(error).__name__}: {text[:300]}",
    )


def main_first(name: str, fn: Callable[[], object], then: Callable[[], object] | None = None):
    """Process 0 runs `fn` (e.g. prepares a dataset, trains the tiny teacher) while the others wait;
    then the others run `then` (e.g. open what process 0 wrote; default `fn` again, which finds the
    work done). Returns what this process ran. When `fn` fails, process 0 still reaches the barrier
    (then raises), so the others go on to `then`, which fails with its own one-line error instead of
    waiting."""
    try:
        result = fn() if is_writer() else None
    finally:
        barrier(f"ddjax:{name}")
    if not is_writer():
        result = (then or fn)()
    return result


def workers() -> list[jax.Device]:
    """Every device of every process, in the same order in every process (process-major)."""
    return sorted(jax.devices(), key=lambda d: (d.process_index, d.id))


def assignment(num_items: int, process: int | None = None) -> list[tuple[int, jax.Device]]:
    """(item, device) pairs that `process` (default: this one) computes: item i runs on device i mod
    D of `workers()`, alone (never split across devices), so its result does not depend on how many
    processes or devices there are."""
    process = jax.process_index() if process is None else process
    devices = workers()
    return [
        (i, devices[i % len(devices)])
        for i in range(num_items)
        if devices[i % len(devices)].process_index == process
    ]


def gather(
    num_items: int,
    local: dict[int, dict[str, np.ndarray]],
    template: dict[str, np.ndarray],
) -> list[dict[str, np.ndarray]]:
    """Every item's result, in item order, in every process, from this process's `local` {item:
    {name: array}} (the items of `assignment(num_items)`). `template` has one item's names, shapes
    and dtypes; every item's arrays have them."""
    if jax.process_count() == 1:
        return [local[i] for i in range(num_items)]
    # The collective below waits for a late partner only so long (XLA's CPU collectives): meet at a
    # barrier first, where a process that computed fewer items may wait for the others for hours.
    barrier("ddjax:gather")
    counts = [len(assignment(num_items, p)) for p in range(jax.process_count())]
    mine = [i for i, _ in assignment(num_items)]
    # Every process calls the all-gather with the same shapes: its items, padded to the largest
    # count.
    stacked = {
        k: np.stack(
            [np.asarray(local[i][k], t.dtype) for i in mine]
            + [np.zeros(t.shape, t.dtype)] * (max(counts) - len(mine))
        )
        for k, t in template.items()
    }  # {name: (max_count, ...)}
    # {name: (processes, max_count, ...)}
    every = multihost_utils.process_allgather(stacked, tiled=False)
    out: list[dict | None] = [None] * num_items
    for p in range(jax.process_count()):
        for j, (i, _) in enumerate(assignment(num_items, p)):
            out[i] = {k: np.asarray(every[k][p, j]) for k in template}
    return out


def run_items(
    num_items: int,
    compute: Callable[[int, jax.Device], dict],
    on_item: Callable[[], None] | None = None,
) -> list[dict[str, np.ndarray]]:
    """Computes item i as `compute(i, device)` (which places its inputs on `device` and returns a
    dict of arrays; every item the same shapes) for this process's items, one round of every local
    device at a time so that the devices work in parallel, then gathers every item's result (numpy)
    into every process. `on_item()` is called after each of this process's items (a progress line).
    """
    mine = assignment(num_items)
    local_devices = max(1, len({d for _, d in mine}))
    local = {}
    for start in range(0, len(mine), local_devices):
        # dispatched asynchronously
        pending = {i: compute(i, d) for i, d in mine[start : start + local_devices]}
        for i, result in pending.items():
            local[i] = {k: np.asarray(v) for k, v in jax.device_get(result).items()}
            if on_item is not None:
                on_item()
    if local:
        template = local[mine[0][0]]
    else:  # more devices than items: this process computes item 0 once, for the shapes only
        template = {
            k: np.asarray(v) for k, v in jax.device_get(compute(0, jax.local_devices()[0])).items()
        }
    return gather(num_items, local, template)


def local_copy(tree):
    """A numpy copy of a pytree of replicated jax.Arrays (a train state's parameters, a step's
    metrics), read from this process's own copy: `jax.device_get` refuses arrays that span other
    processes' devices."""

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            if not x.is_fully_replicated:
                raise ValueError(f"local_copy needs a replicated array, got sharding {x.sharding}")
            return np.asarray(x.addressable_data(0))
        return np.asarray(x)

    return jax.tree_util.tree_map(one, tree)
