"""A run's checkpoints: restoring a run (its config record and latest checkpoint) for evaluation,
and reading orbax checkpoints with every failure as one CheckpointError naming the step folder.

    # any kind of model (models/registry.py)
    run_config, variables, step = checkpoints.restore_run(RUN_DIR)
"""

from __future__ import annotations

import json
import pathlib
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from ddjax import distributed, errors, run_folder
from ddjax.models import dual_denoising as dd
from ddjax.models import registry


def _step_folders(directory) -> list[pathlib.Path]:
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.iterdir() if p.name.isdigit() and p.is_dir()), key=str)


def stray_steps(directory) -> list[pathlib.Path]:
    """Folders of `directory` named like a step that hold no checkpoint (no `state` folder): an
    empty `mkdir checkpoints/999`, a copy that lost its contents."""
    return [p for p in _step_folders(directory) if not (p / "state").is_dir()]


def latest_step(directory, note: Callable[[str], None] = errors.note) -> int | None:
    """The latest step of `directory` that holds a checkpoint (orbax's own choice is the highest
    step-named folder, a stray one included); each stray folder (`stray_steps`) is named and
    skipped."""
    for stray in stray_steps(directory):
        note(f"{stray} holds no checkpoint (no state folder); it is skipped")
    steps = [int(p.name) for p in _step_folders(directory) if (p / "state").is_dir()]
    return max(steps, default=None)


def clear_strays(directory, note: Callable[[str], None] = errors.note) -> None:
    """Before a run writes checkpoints into `directory`: an empty stray step folder is removed
    (orbax would save no step below it), a stray with files in it is refused (CheckpointError)."""
    for stray in stray_steps(directory):
        if any(stray.iterdir()):
            raise errors.CheckpointError(
                stray,
                "a folder named like a checkpoint step that holds no checkpoint (no state "
                "folder), with files in it; orbax would save no step below it",
                "move it out of the run folder's checkpoints/",
            )
        stray.rmdir()
        note(f"removed {stray}: an empty folder named like a checkpoint step")


def restore(manager, step: int, args, directory):
    """manager.restore(step, args=args), with a damaged or unreadable checkpoint as one
    CheckpointError."""
    try:
        return manager.restore(step, args=args)
    except Exception as e:  # noqa: BLE001 - orbax/tensorstore raise many types for a damaged checkpoint
        why = errors.one_line(e)
        raise errors.CheckpointError(
            pathlib.Path(directory) / str(step),
            f"damaged or not an orbax checkpoint ({type(e).__name__}: "
            f"{why[:300]}{'...' if len(why) > 300 else ''})",
            "restore it from a backup, or delete that step's folder to fall back to an earlier "
            "checkpoint "
            "(or retrain)",
        ) from None


def state_metadata(directory, step: int):
    """The shapes and dtypes of checkpoint `step`'s `state` item (orbax metadata: nothing is read
    into memory); a damaged or unreadable checkpoint is one CheckpointError."""
    where = pathlib.Path(directory) / str(step)
    try:
        return ocp.StandardCheckpointHandler().metadata(where / "state").tree
    except Exception as e:  # noqa: BLE001 - as in `restore`
        raise errors.CheckpointError(
            where,
            f"damaged or not an orbax checkpoint (its state's metadata: "
            f"{type(e).__name__}: {errors.one_line(e)[:300]})",
        ) from None


def restore_state(manager, step: int, directory) -> dict:
    """The `state` item of checkpoint `step`, every array on this process's first device, whatever
    devices and processes saved it (a run trained on 8 GPUs or 2 hosts evaluates on one). A damaged
    or unreadable checkpoint is one CheckpointError."""
    tree = state_metadata(directory, step)  # shapes and dtypes
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree_util.tree_map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), tree
    )
    return restore(
        manager, step, ocp.args.Composite(state=ocp.args.StandardRestore(target)), directory
    )["state"]


def check_tree(expected, restored, where) -> None:
    """CheckpointError naming the first parameter whose path or shape differs between `expected`
    (shapes of the model the run's config describes) and `restored` (what the checkpoint holds)."""
    want = {
        jax.tree_util.keystr(k): tuple(v.shape)
        for k, v in jax.tree_util.tree_leaves_with_path(expected)
    }
    have = {
        jax.tree_util.keystr(k): tuple(np.shape(v))
        for k, v in jax.tree_util.tree_leaves_with_path(restored)
    }
    missing, extra = sorted(set(want) - set(have)), sorted(set(have) - set(want))
    shapes = [k for k in sorted(set(want) & set(have)) if want[k] != have[k]]
    if missing or extra or shapes:
        parts = (
            ([f"{len(missing)} parameters missing (first {missing[0]})"] if missing else [])
            + ([f"{len(extra)} unexpected (first {extra[0]})"] if extra else [])
            + (
                [
                    f"{len(shapes)} of another shape (first {shapes[0]}: {have[shapes[0]]}, the "
                    "run's config needs "
                    f"{want[shapes[0]]})"
                ]
                if shapes
                else []
            )
        )
        raise errors.CheckpointError(
            where,
            "holds a different model than the run's config.json describes ("
            + ", ".join(parts)
            + ")",
            "the checkpoint and config.json come from different runs: copy the whole run "
            "folder, never one file of it",
        )


def read_run_config(run_dir: str) -> dict:
    """RUN_DIR/config.json as a dict; CheckpointError if it is unreadable or lacks the model."""
    path = pathlib.Path(run_dir).expanduser() / "config.json"
    try:
        run_config = json.loads(path.read_text())
        run_config["model"]["num_timesteps"], run_config["model"]["num_groups"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise errors.CheckpointError(
            path, f"not a readable run record ({errors.one_line(e)})"
        ) from None
    return run_config


def restore_run(run_dir: str) -> tuple[dict, dict, int]:
    """(run config as a dict, variables {'params', 'batch_stats'}, step) of a pretraining (or
    converted) run's latest checkpoint, restored into the shapes of its own model config. A Dual
    Denoising checkpoint saved before the block stacks were scanned (`encoder/block00`, ...) is
    stacked as it is read: the same model."""
    root = pathlib.Path(run_dir).expanduser().resolve()
    if not (root / "config.json").is_file():
        raise errors.CheckpointError(root, "not a pretraining run folder (no config.json)")
    run_config = read_run_config(root)
    # './teacher' lies inside the run folder, wherever it is now
    if "teacher" in run_config.get("resolved", {}):
        run_config["resolved"]["teacher"] = run_folder.resolve_path(
            root, run_config["resolved"]["teacher"]
        )
    model_config = ml_collections.ConfigDict(run_config["model"])
    manager = ocp.CheckpointManager(root / "checkpoints")
    step = latest_step(root / "checkpoints")
    if step is None:
        raise errors.CheckpointError(
            root / "checkpoints", "no checkpoint (the run has not saved one yet)"
        )
    state = restore_state(manager, step, root / "checkpoints")
    manager.close()
    # This process's own copy, uncommitted: each evaluation batch runs on whichever device it is
    # dealt to.
    variables = jax.tree_util.tree_map(
        jnp.asarray,
        distributed.local_copy({"params": state["params"], "batch_stats": state["batch_stats"]}),
    )
    if dd.is_unrolled(variables):
        variables = dd.stack_layers(variables)
    shapes = jax.eval_shape(lambda k: registry.init_variables(model_config, k), jax.random.key(0))
    check_tree(shapes, variables, root / "checkpoints" / str(step))
    return run_config, variables, int(step)
