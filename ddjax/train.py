"""The one trainer's pieces, as the Flax examples write them: the pretraining job
(ddjax/jobs/pretrain.py) runs them in order.

    data = open_data(config)                           # the prepared dataset, step counts
    teacher = load_teacher(config, workdir, data)      # Targets: the online CLIP teacher or a bank
    data_iter = input_pipeline(config, data, teacher)  # grain, resumable
    tx, schedule = make_optimizer(config, data.steps_per_epoch)
    state = create_train_state(config.model, tx, key)  # {'params', 'batch_stats', 'opt', 'step'}
    state, start = restore_or_init(...)                # the run's checkpoint, init_from or scratch
    state, metrics = train_step(state, batch, teacher.inputs, loop_key, loss_fn=..., tx=...,
                                schedule=...)

Resume order: the workdir's own latest checkpoint, else `config.init_from` (another run's
checkpoint: parameters and BatchNorm statistics only), else scratch. Every random choice derives
from `config.seed` and the step or record index (`fold_in(key, step)`; grain's per-record rngs and
saved iterator state), so a resumed run equals an uninterrupted one. A checkpoint saved before the
block stacks were scanned (`encoder/block00`, ...) is read in its own layout and stacked
(dd.stack_layers: the same parameters and optimiser moments).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import re
from typing import Any, Callable

import grain
import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

from ddjax import checkpoints, distributed, errors, evaluation, optim, scoring
from ddjax.data import pipelines, prepare
from ddjax.models import dual_denoising as dd
from ddjax.teachers import cache, clip, sanity, tiny_clip


# ------------------------------------------------------------------------------------------------
# data
@dataclasses.dataclass(frozen=True)
class Data:
    """The prepared pretraining dataset and the step counts it implies."""

    builder: Any  # the tfds builder
    source: pipelines.IndexedSource  # config.splits, concatenated
    steps_per_epoch: int
    # config.total_steps, or (epochs + 1) x steps_per_epoch: ReCon runs epochs 0..300
    total_steps: int
    class_texts: list[str]


def open_data(config) -> Data:
    """Opens (with config.auto_prepare: prepares, in process 0 while the others wait) the dataset;
    ConfigError when the clouds are too small or the batch too large for it."""
    # process 0 prepares (downloads, converts); the others then open its files
    if config.auto_prepare:
        builder = distributed.main_first(
            "prepare",
            lambda: prepare.prepare(config.dataset, config.data_dir),
            then=lambda: prepare.open_dataset(config.dataset, config.data_dir),
        )
    else:
        builder = prepare.open_dataset(config.dataset, config.data_dir)
    available = builder.info.features["points"].shape[0]
    if config.num_points > available:
        raise errors.ConfigError(
            "num_points",
            f"{config.num_points} exceeds the {available} points per cloud of {config.dataset}",
            f"use at most {available}",
        )
    source = pipelines.IndexedSource([builder.as_data_source(s) for s in config.splits])
    steps_per_epoch = len(source) // config.batch_size
    if steps_per_epoch < 1:
        raise errors.ConfigError(
            "batch_size",
            f"{config.batch_size} exceeds the {len(source)} records of "
            f"{config.dataset} {tuple(config.splits)}",
            "use a smaller batch",
        )
    total_steps = config.total_steps or (config.epochs + 1) * steps_per_epoch
    return Data(builder, source, steps_per_epoch, total_steps, cache.class_texts(builder))


# ------------------------------------------------------------------------------------------------
# teacher
@dataclasses.dataclass(frozen=True)
class Targets:
    """The distillation targets' source: the frozen CLIP model (online) or the cached bank."""

    clip: clip.Teacher | None  # online mode's teacher; None with a cached bank
    text_bank: jax.Array  # (C, 20, 3, D): every class's prompt features
    image_bank: jax.Array | None  # cached mode: (records, views, D)
    num_views: int  # cached mode's views per record
    dim: int
    image_size: int  # the online teacher's input size
    source: str  # hub name, directory or the bank's folder

    @property
    def inputs(self) -> tuple:
        """The arrays `train_step` takes beside the batch: (teacher params, text bank,
        image bank)."""
        return (
            self.clip.params if self.clip is not None else None,
            self.text_bank,
            self.image_bank,
        )


def _load_clip(config, workdir: pathlib.Path, data: Data) -> clip.Teacher:
    """The online teacher: the smoke run's tiny CLIP (trained once into WORKDIR/teacher by process
    0) or config.teacher."""
    if config.tiny_teacher.enabled:
        teacher_dir = workdir / "teacher"

        def train_tiny_teacher():  # process 0 trains it once; the others wait for it, then load it
            if (teacher_dir / "config.json").is_file():
                return
            tiny_clip.train(
                teacher_dir,
                data.builder.as_data_source("train"),
                data.class_texts,
                image_size=config.tiny_teacher.image_size,
                width=config.tiny_teacher.width,
                projection_dim=config.tiny_teacher.projection_dim,
                steps=config.tiny_teacher.steps,
                seed=config.seed,
                tokenizer_dir=os.path.expanduser(config.tiny_teacher.tokenizer_dir) or None,
                image_pipeline=config.image_pipeline,
            )

        distributed.main_first("tiny teacher", train_tiny_teacher, then=lambda: None)
        tiny_clip.check_report(teacher_dir)
        return clip.load(str(teacher_dir))
    try:
        return clip.load(config.teacher)
    except clip.TeacherLoadError as e:
        raise clip.TeacherLoadError(
            f"config.teacher={config.teacher}",
            e.why,
            "with internet the hub name downloads on first use; "
            + e.todo.replace("then pass DIR", "then pass --config.teacher=DIR"),
        ) from None


def load_teacher(config, workdir: pathlib.Path, data: Data) -> Targets:
    """config.teacher_mode 'online' (the CLIP model) or 'cached' (the bank of
    configs/teacher_cache.py); ConfigError when its feature width is not the model's teacher_dim."""
    if config.teacher_mode == "online":
        model = _load_clip(config, workdir, data)
        teacher = Targets(
            model,
            jnp.asarray(clip.prompt_bank(model, data.class_texts)),
            None,
            0,
            model.dim,
            model.image_size,
            model.source,
        )
    else:
        text_bank, image_bank, manifest = cache.load(
            config.teacher_cache,
            dataset=data.builder.info.full_name,
            splits=list(config.splits),
            image_pipeline=config.image_pipeline,
            num_records=len(data.source),
        )
        teacher = Targets(
            None,
            text_bank,
            image_bank,
            manifest["views"],
            manifest["dim"],
            224,
            config.teacher_cache,
        )
    if teacher.dim != config.model.teacher_dim:
        raise errors.ConfigError(
            "model.teacher_dim",
            f"{config.model.teacher_dim}, but the teacher's features have {teacher.dim} dimensions",
            f"set --config.model.teacher_dim={teacher.dim}",
        )
    check_targets(config, data, teacher)
    return teacher


def check_targets(config, data: Data, teacher: Targets) -> None:
    """TeacherError unless the targets tell the classes and the renders apart
    (teachers/sanity.py): the class sums of the text bank, and the image features of a few renders
    (online: the image tower on them; cached: their first view in the bank)."""
    if teacher.clip is None:
        source = f"the teacher cache {config.teacher_cache}"
        todo = "rebuild it with configs/teacher_cache.py from a trained CLIP"
    elif config.tiny_teacher.enabled:
        source = f"the tiny teacher {teacher.source}"
        todo = "train it longer in a new --workdir (--config.tiny_teacher.steps)"
    else:
        source, todo = f"config.teacher={config.teacher}", None
    class_sums = jnp.sum(teacher.text_bank, axis=(1, 2))  # (C, D): every class's 60 prompts
    if teacher.clip is not None:
        sanity.check_clip(
            teacher.clip,
            data.class_texts,
            data.source,
            config.image_pipeline,
            class_sums=class_sums,
            source=source,
            todo=todo,
        )
        return
    sanity.check_class_features(class_sums, data.class_texts, source, todo)
    rows = sanity.spread(sanity.PROBE_IMAGES, teacher.image_bank.shape[0])
    sanity.check_image_features(teacher.image_bank[rows, 0], source, todo)  # (n, D): first views


def input_pipeline(config, data: Data, teacher: Targets):
    """This process's share of every global batch (grain, in worker processes): points, and the
    augmented image (online teacher) or a cached view's index; its iterator checkpoints beside the
    train state."""
    transform = pipelines.PretrainTransform(
        num_points=config.num_points,
        image_pipeline=config.image_pipeline if teacher.clip is not None else None,
        image_size=teacher.image_size,
        num_views=teacher.num_views,
    )
    loader = pipelines.pretrain_loader(
        data.source,
        batch_size=config.batch_size // jax.process_count(),
        seed=config.seed,
        transform=transform,
        worker_count=config.worker_count,
    )
    return iter(loader)


# ------------------------------------------------------------------------------------------------
# model/opt
def make_optimizer(config, steps_per_epoch: int):
    """(AdamW with ReCon's no-decay groups, its per-epoch learning-rate schedule)."""
    schedule = optim.epoch_schedule(
        base_lr=config.lr,
        warmup_epochs=config.warmup_epochs,
        epochs=config.epochs,
        steps_per_epoch=steps_per_epoch,
    )
    return optim.adamw(schedule, weight_decay=config.weight_decay), schedule


def create_train_state(model_config, tx, key: jax.Array) -> dict:
    """The train state, a plain pytree: {'params', 'batch_stats', 'opt', 'step'} (jit it;
    jax.eval_shape for its shapes)."""
    variables = dd.init_variables(model_config, key)
    return {
        "params": variables["params"],
        "batch_stats": variables["batch_stats"],
        "opt": tx.init(variables["params"]),
        "step": jnp.zeros((), jnp.int32),
    }


# ------------------------------------------------------------------------------------------------
# step
def _norm(tree) -> jax.Array:
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))


def train_step(
    state: dict,
    batch: dict,
    teacher_inputs: tuple,
    loop_key: jax.Array,
    *,
    loss_fn: Callable,
    tx,
    schedule: Callable,
    teacher: clip.Teacher | None = None,
) -> tuple[dict, dict]:
    """One step: the teacher's targets (online: `teacher`'s image tower on the batch's views; else
    the cached bank), the loss at fold_in(loop_key, step), its gradient, AdamW. Pure: (state,
    metrics) from the arguments alone; jit it with the keyword arguments bound (functools.partial)
    and the state donated.

    teacher_inputs: (teacher params or None, text bank, image bank or None), `Targets.inputs`."""
    teacher_params, text_bank, image_bank = teacher_inputs
    step = state["step"]
    key = jax.random.fold_in(loop_key, step)
    if teacher is not None:
        targets = cache.online_targets(teacher, teacher_params, text_bank, batch)
    else:
        targets = cache.cached_targets(image_bank, text_bank, batch)
    model_batch = {"points": batch["points"], **targets}

    def objective(params):
        return loss_fn({"params": params, "batch_stats": state["batch_stats"]}, model_batch, key)

    (loss, (metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(
        state["params"]
    )
    updates, opt = tx.update(grads, state["opt"], state["params"])
    params = jax.tree_util.tree_map(lambda p, u: p + u, state["params"], updates)
    metrics = {
        "loss": loss,
        "loss_rec": metrics["loss_recon"],
        # one entry per feature type the model has (an ablation may have one)
        **{k: metrics[k] for k in ("loss_image", "loss_text") if k in metrics},
        "chamfer": metrics["chamfer"],
        "lr": schedule(step),
        "grad_norm": _norm(grads),
        "param_norm": _norm(params),
        "update_norm": _norm(updates),
    }
    return {"params": params, "batch_stats": batch_stats, "opt": opt, "step": step + 1}, metrics


# ------------------------------------------------------------------------------------------------
# restore
def _check_process_count(checkpoint: pathlib.Path) -> None:
    """A checkpoint holds one data-iterator state per process: resuming needs as many processes as
    saved it."""
    saved = {
        int(m[1])
        for f in (checkpoint / "data").glob("process_*-of-*.json")
        if (m := re.fullmatch(r"process_\d+-of-(\d+)\.json", f.name))
    }
    if saved and saved != {jax.process_count()}:
        count = min(saved)
        raise errors.UserError(
            checkpoint,
            f"written by {count} process{'es' if count > 1 else ''}, resumed by "
            f"{jax.process_count()} (each process saved its own data-iterator position)",
            f"resume with {count} process{'es' if count > 1 else ''} (--num_processes={count}), "
            "or start a new run with --config.init_from=THIS_RUN",
        )


def _restore_state(
    manager, step: int, directory: pathlib.Path, target: dict, sharding, data_iter=None
) -> dict:
    """The train state of checkpoint `step` (and the data iterator's position into `data_iter`). A
    checkpoint saved before the block stacks were scanned (`encoder/block00`, ...) is read in its
    own layout and stacked (dd.stack_layers: the same parameters and optimiser moments); the run's
    next checkpoint is in today's."""
    legacy = dd.is_unrolled(checkpoints.state_metadata(directory, step))
    items = {"state": ocp.args.StandardRestore(dd.unstack_layers(target) if legacy else target)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    state = checkpoints.restore(manager, step, ocp.args.Composite(**items), directory)["state"]
    if legacy:
        # also for arrays across processes
        state = jax.jit(dd.stack_layers, out_shardings=sharding)(state)
        print(
            f"read {directory / str(step)} in the unrolled layout of earlier ddjax versions "
            "(converted; later "
            "checkpoints use the scanned layout)"
        )
    return state


def restore_or_init(
    config,
    manager,
    directory: pathlib.Path,
    init: Callable[[], dict],
    abstract_state: dict,
    sharding,
    data_iter,
) -> tuple[dict, int]:
    """(state, first step): the latest checkpoint of the run (with the data position), else `init()`
    with config.init_from's parameters and BatchNorm statistics (fresh optimiser, step 0), else
    `init()`."""
    target = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, sharding
    )
    start = checkpoints.latest_step(directory)
    if start is not None:
        _check_process_count(directory / str(start))
        state = _restore_state(manager, start, directory, target, sharding, data_iter)
        print(f"resumed from {directory / str(start)}")
        return state, start
    state = init()
    if config.init_from:
        other_dir = pathlib.Path(config.init_from).expanduser().resolve() / "checkpoints"
        other = ocp.CheckpointManager(other_dir)
        step = checkpoints.latest_step(other_dir)
        if step is None:
            raise errors.ConfigError(
                "init_from",
                f"{config.init_from} has no checkpoint in {config.init_from}/checkpoints",
                "pass a run that has saved one",
            )
        restored = _restore_state(other, step, other_dir, target, sharding)
        other.close()
        state = {**state, "params": restored["params"], "batch_stats": restored["batch_stats"]}
        print(f"initialised parameters from {config.init_from}")
    return state, 0


# ------------------------------------------------------------------------------------------------
# evals
def evaluate_zeroshot(config, teacher: clip.Teacher | None, variables) -> dict:
    """Zero-shot top-1/top-5 on `config.eval.dataset`'s test split with the paper's scoring."""
    ev = config.eval
    builder = evaluation.open_eval_dataset(ev.dataset, ev.data_dir)
    if teacher is None:
        raise ValueError(
            "zero-shot evaluation needs the text teacher: use teacher_mode='online' or the "
            "zeroshot job"
        )
    classnames = cache.class_texts(builder)
    text_features = scoring.class_text_features(teacher, classnames, ev.template)
    sanity.check_class_features(text_features, classnames, teacher.source)
    batches = scoring.load_batches(
        builder.as_data_source("test"),
        npoints=ev.npoints,
        point_all=ev.point_all,
        batch_size=ev.batch_size,
        seed=ev.seed,
        normalize=not ev.dataset.startswith("scanobjectnn"),
    )
    inference = dd.make_inference(config.model)
    infer = jax.jit(inference.infer, static_argnames=("t", "num_paths"))
    result = scoring.evaluate(
        infer,
        variables,
        batches,
        text_features,
        ratio=ev.ratio,
        t=ev.t,
        num_paths=ev.num_paths,
        key=jax.random.key(ev.seed),
        feature_types=inference.feature_types,
        ratio_key="eval.ratio",
    )
    result.update({"dataset": ev.dataset, "teacher": teacher.source, "class_names": classnames})
    return result
