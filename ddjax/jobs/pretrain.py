"""The pretraining job (configs/pretrain.py): Dual Denoising pretrained from frozen CLIP teachers,
with the trainer of ddjax/train.py.

The run folder (--workdir) holds config.json (the config and what it resolved to),
model_summary.json, metrics.jsonl, checkpoints/<step>/ (orbax: the train state and the data
iterator's position), the smoke run's own teacher/, and zeroshot.json when config.eval.dataset is
set; for people, curves.png/.pdf (redrawn at checkpoints, at most once a minute, and at the end) and
TensorBoard's events.out.tfevents.pretrain and .zeroshot (ddjax/tensorboard_events.py). Running the
same command again resumes; a command that would change what the run means is refused
(ddjax/run_folder.py). A finished run (its last checkpoint at the final step) only re-runs the
evaluation if it is missing.
"""

from __future__ import annotations

import functools
import json
import pathlib
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ddjax import (
    checkpoints,
    config_checks,
    distributed,
    errors,
    figures,
    memory,
    progress,
    run_folder,
    scoring,
    tensorboard_events,
    train,
)
from ddjax import metrics as metrics_lib
from ddjax.data import image_augment, prepare
from ddjax.models import dual_denoising as dd
from ddjax.teachers import tiny_clip

# Every key the trainer reads; anything else in a config is reported (style: fail on unused config).
KEYS = {
    "": {
        "job",
        "seed",
        "model",
        "dataset",
        "data_dir",
        "splits",
        "auto_prepare",
        "num_points",
        "batch_size",
        "epochs",
        "warmup_epochs",
        "total_steps",
        "lr",
        "weight_decay",
        "teacher",
        "teacher_mode",
        "teacher_cache",
        "image_pipeline",
        "tiny_teacher",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "init_from",
        "worker_count",
        "eval",
        "distributed",
        "allow_changes",
    },
    "tiny_teacher": {"enabled", "steps", "width", "image_size", "projection_dim", "tokenizer_dir"},
    "eval": {
        "dataset",
        "data_dir",
        "npoints",
        "point_all",
        "batch_size",
        "ratio",
        "num_paths",
        "t",
        "template",
        "seed",
    },
}
TEACHER_MODES = ("online", "cached")


def check_config(config, workdir: str | None = None) -> None:
    """Every value checked before any data, teacher or compilation: ConfigError naming the key."""
    config_checks.check_keys(
        config,
        KEYS,
        extra=[
            f"model.{k}" for k in config.model.keys() if k not in dd.model_config("tiny").keys()
        ],
    )
    config_checks.require_workdir(workdir, "pretrain", "checkpoints and metrics")
    dd.validate_config(config.model)
    config_checks.check_choice(config, "dataset", sorted(prepare.DATASETS))
    if config.eval.dataset:
        prepare.check_dataset(config, "eval.dataset")
    if not config.splits or any(s not in ("train", "test") for s in config.splits):
        raise errors.ConfigError(
            "splits", f"must name 'train' and/or 'test', got {tuple(config.splits)}"
        )
    for key in (
        "batch_size",
        "num_points",
        "epochs",
        "log_every",
        "checkpoint_every",
        "keep_checkpoints",
        "eval.npoints",
        "eval.batch_size",
        "eval.num_paths",
        "tiny_teacher.steps",
        "tiny_teacher.width",
        "tiny_teacher.image_size",
        "tiny_teacher.projection_dim",
    ):
        config_checks.check_int(config, key, 1)
    for key in ("total_steps", "warmup_epochs", "worker_count"):
        config_checks.check_int(config, key, 0)
    config_checks.check_seed(config)
    config_checks.check_seed(config, "eval.seed")
    config_checks.check_int(config, "eval.t", 0, config.model.num_timesteps - 1)
    config_checks.check_int(config, "eval.point_all", config.eval.npoints)
    config_checks.check_number(config, "lr", 0.0, low_open=True)
    config_checks.check_number(config, "weight_decay", 0.0)
    config_checks.check_number(config, "eval.ratio", 0.0)
    config_checks.check_divisible(config, "batch_size", jax.device_count())
    config_checks.check_choice(config, "teacher_mode", TEACHER_MODES)
    config_checks.check_choice(config, "image_pipeline", image_augment.PIPELINES)
    run_folder.parse_allowed(config.allow_changes)
    if config.num_points < max(config.model.num_groups, config.model.group_size):
        raise errors.ConfigError(
            "num_points",
            f"{config.num_points} points are fewer than the tokenizer needs "
            f"(model.num_groups={config.model.num_groups}, model.group_size="
            f"{config.model.group_size})",
        )
    if config.teacher_mode == "cached" and not (
        config.teacher_cache and pathlib.Path(config.teacher_cache).expanduser().is_dir()
    ):
        raise errors.ConfigError(
            "teacher_cache",
            f"{config.teacher_cache!r} is not a folder",
            "build the bank with configs/teacher_cache.py and pass its --workdir",
        )
    if config.teacher_mode == "online" and not config.tiny_teacher.enabled and not config.teacher:
        raise errors.ConfigError("teacher", "empty", "pass a CLIP hub name or a local directory")
    tokenizer_dir = config.tiny_teacher.tokenizer_dir
    if tokenizer_dir and tokenizer_dir != tiny_clip.FALLBACK:
        if not tiny_clip.has_tokenizer(pathlib.Path(tokenizer_dir).expanduser()):
            raise errors.ConfigError(
                "tiny_teacher.tokenizer_dir",
                f"{tokenizer_dir} holds no {' and '.join(tiny_clip.TOKENIZER_FILES)}",
                f"leave it empty for the package's CLIP tokenizer, '{tiny_clip.FALLBACK}' for the "
                "character-level one, or pass a folder with CLIP's files",
            )
    if config.init_from:
        config_checks.check_run_dir(config, "init_from")
    check_schedule_and_evaluation(config)


def check_schedule_and_evaluation(config) -> None:
    """The warm-up within the schedule, and the evaluation after training within one device's
    memory (`memory.check_inference`, before anything compiles)."""
    if config.warmup_epochs > config.epochs:
        raise errors.ConfigError(
            "warmup_epochs",
            f"{config.warmup_epochs} is more than config.epochs={config.epochs}: the learning rate "
            "would never reach config.lr",
            "use at most config.epochs",
        )
    if config.eval.dataset:
        memory.check_inference(
            config.model.to_dict(),
            batch=config.eval.batch_size,
            num_paths=config.eval.num_paths,
            t=config.eval.t,
            keys=("eval.num_paths", "eval.batch_size"),
        )


def run(config, workdir: str) -> dict:
    """Pretrains (or resumes) the run in `workdir`, then evaluates it zero-shot when
    config.eval.dataset is set."""
    check_config(config, workdir)
    workdir, config_json = open_run_folder(config, workdir)
    if distributed.is_writer():  # before any work: orbax would save no step below a stray
        checkpoints.clear_strays(workdir / "checkpoints")
    # process-major: each process's rows of the global batch together
    mesh = jax.sharding.Mesh(np.array(distributed.workers()), ("data",))
    data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    data = train.open_data(config)
    teacher = train.load_teacher(config, workdir, data)
    data_iter = train.input_pipeline(config, data, teacher)
    tx, schedule = train.make_optimizer(config, data.steps_per_epoch)
    init_key, loop_key = jax.random.split(jax.random.key(config.seed))
    init = jax.jit(functools.partial(train.create_train_state, config.model, tx))
    abstract_state = jax.eval_shape(init, init_key)
    state_sharding = jax.tree_util.tree_map(lambda _: replicated, abstract_state)
    write_record(workdir, config, config_json, data, teacher)
    step_fn = jax.jit(
        functools.partial(
            train.train_step,
            loss_fn=dd.make_train_loss(config.model),
            tx=tx,
            schedule=schedule,
            teacher=teacher.clip,
        ),
        donate_argnums=(0,),
        out_shardings=(state_sharding, replicated),
    )
    manager = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints, enable_async_checkpointing=True, create=True
        ),
    )
    state, start = train.restore_or_init(
        config,
        manager,
        workdir / "checkpoints",
        lambda: jax.jit(init, out_shardings=state_sharding)(init_key),
        abstract_state,
        state_sharding,
        data_iter,
    )
    if start >= data.total_steps:
        print(f"run already finished at step {start} (of {data.total_steps})")
        manager.close()
        if config.eval.dataset and not (workdir / "zeroshot.json").is_file():
            return {"step": start, "zeroshot": evaluate(config, teacher, state, workdir)}
        return {"step": start}
    print(
        f"pretraining {config.model.variant} Dual Denoising "
        f"({dd.parameter_counts(config.model)['total'] / 1e6:.2f}M parameters) on "
        f"{config.dataset}: {data.total_steps} steps of batch {config.batch_size} "
        f"({data.steps_per_epoch} steps/epoch) on {jax.device_count()} {jax.default_backend()} "
        "device(s)"
    )
    global_batch = lambda local: {
        k: jax.make_array_from_process_local_data(data_sharding, np.asarray(v))
        for k, v in local.items()
    }
    state, last = loop(
        config,
        workdir,
        manager,
        step_fn,
        state,
        start,
        data.total_steps,
        data_iter,
        global_batch,
        teacher.inputs,
        loop_key,
    )
    zeroshot = evaluate(config, teacher, state, workdir)
    return {"step": data.total_steps, "metrics": last, "zeroshot": zeroshot}


def open_run_folder(config, workdir: str) -> tuple[pathlib.Path, dict]:
    """(the run folder as an absolute path: orbax needs one, the config as JSON), after refusing a
    command that would change what an existing run means; process 0 creates it."""
    workdir = pathlib.Path(workdir).expanduser().resolve()
    config_json = json.loads(config.to_json_best_effort())
    run_folder.check_same_run(workdir, config_json)  # before anything is written into the run
    if distributed.is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
    distributed.barrier("run folder")  # every process checked it before process 0 writes into it
    return workdir, config_json


def write_record(
    workdir: pathlib.Path, config, config_json: dict, data: train.Data, teacher: train.Targets
) -> None:
    """config.json: the config and what it resolved to (the teacher, './teacher' inside the run,
    its width, the class texts, the step counts), and model_summary.json."""
    metrics_lib.write_json(
        workdir / "config.json",
        config_json
        | {
            "resolved": {
                "teacher": run_folder.store_path(workdir, teacher.source),
                "teacher_dim": teacher.dim,
                "image_size": teacher.image_size,
                "class_texts": data.class_texts,
                "steps_per_epoch": data.steps_per_epoch,
                "total_steps": data.total_steps,
                "dataset_full_name": data.builder.info.full_name,
            }
        },
    )
    metrics_lib.write_json(workdir / "model_summary.json", dd.parameter_counts(config.model))


def loop(
    config,
    workdir: pathlib.Path,
    manager,
    step_fn,
    state: dict,
    start: int,
    total_steps: int,
    data_iter,
    global_batch,
    teacher_inputs: tuple,
    loop_key,
) -> tuple[dict, dict]:
    """Steps start..total_steps: a non-finite loss stops the run naming its step; a metric line
    every log_every steps (step/total, rate, ETA: the progress in a log; a terminal also gets an
    in-place bar) and a checkpoint every checkpoint_every steps and at the end. Returns (state, the
    last logged metrics)."""
    bar = (
        progress.bar(total=total_steps, initial=start, desc="pretraining", unit="step")
        if progress.on_terminal()
        else None
    )
    writer = metrics_lib.MetricWriter(
        str(workdir),
        total_steps,
        start,
        echo=bar.write if bar is not None else lambda line: print(line, flush=True),
    )
    last = {}
    zero_losses = ZeroLosses()
    drawn = time.monotonic()  # the curves' last drawing (none yet: the first after CURVES_EVERY_S)
    batch = None  # read ahead by the previous step, or not yet read
    for step in range(start, total_steps):
        if batch is None:
            batch = global_batch(next(data_iter))
        if step == start:
            # Compiled in each process, then met at a barrier: the first step's collectives find
            # every process ready, however long one took to compile (XLA's CPU collectives wait
            # for a late partner only so long).
            step_fn = step_fn.lower(state, batch, teacher_inputs, loop_key).compile()
            distributed.barrier("ddjax:train step compiled")
        state, metrics = step_fn(state, batch, teacher_inputs, loop_key)
        done = step + 1
        # The next batch while this step computes (the step is dispatched, not finished), except
        # before a checkpoint: its data-iterator state must be the one after step `done`'s batch.
        saves = done % config.checkpoint_every == 0 or done == total_steps
        batch = None if saves else global_batch(next(data_iter))
        # one scalar per step: names a non-finite loss's step
        loss = float(distributed.local_copy(metrics["loss"]))
        zero_losses.update(step, distributed.local_copy(metrics))
        if not np.isfinite(loss):
            raise errors.UserError(
                workdir,
                f"non-finite loss {loss} at step {step} (steps {start}..{step} ran in "
                f"this process; the last checkpoint is step {manager.latest_step()})",
                "lower --config.lr or check the data; a new run needs another --workdir",
            )
        if step == start:  # what a user waits for: imports, data, teacher, compilation and one step
            writer.echo(progress.first_step_line())
        if bar is not None:
            bar.update(1)
        if done % config.log_every == 0 or done == total_steps:
            last = writer.write(done, distributed.local_copy(metrics))
        if saves:
            save_checkpoint(manager, done, state, data_iter)
            # at most once every CURVES_EVERY_S, and at the end unless the evaluation redraws them
            last_step = done == total_steps
            if (last_step and not config.eval.dataset) or (
                not last_step and time.monotonic() - drawn >= CURVES_EVERY_S
            ):
                write_curves(workdir, writer.records)
                drawn = time.monotonic()
    if bar is not None:
        bar.close()
    writer.close()
    manager.wait_until_finished()
    manager.close()
    return state, last


def save_checkpoint(manager: ocp.CheckpointManager, step: int, state: dict, data_iter) -> None:
    """Checkpoint `step`: the train state and the data iterator's position (orbax, asynchronous)."""
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(data_iter),
        ),
    )


class ZeroLosses:
    """Says once (a note on stderr) when a feature loss has been 0 for ZERO_LOSS_STEPS steps in a
    row: its targets are constant (a collapsed teacher) and the student has learned them, so the
    run goes on distilling nothing."""

    def __init__(self):
        self.since: dict[str, int] = {}  # loss name -> first step of its current run of zeros
        self.noted: set[str] = set()

    def update(self, step: int, metrics: dict) -> None:
        for name in FEATURE_LOSSES:
            if name not in metrics or name in self.noted:
                continue
            if float(metrics[name]) > ZERO_LOSS:
                self.since.pop(name, None)
                continue
            first = self.since.setdefault(name, step)
            if step - first + 1 >= ZERO_LOSS_STEPS:
                self.noted.add(name)
                errors.note(
                    f"the {name[5:]} feature loss has been 0 (at most {ZERO_LOSS:g}) for "
                    f"{ZERO_LOSS_STEPS} steps, since step {first}: its targets are the same for "
                    "every sample, so nothing is being distilled; the teacher is collapsed (check "
                    "its class text features and image features)"
                )


FEATURE_LOSSES = ("loss_image", "loss_text")
ZERO_LOSS = 1e-6  # Smooth-L1 of any two features that differ is far above it
ZERO_LOSS_STEPS = 50


# The curves are redrawn at a checkpoint when the last drawing is at least this old: a drawing (PNG
# at 200 dpi and PDF) took 1.5 s on 2 cores, which a short run's frequent checkpoints would pay each
# time.
CURVES_EVERY_S = 60


def write_curves(workdir: pathlib.Path, records: list[dict]) -> None:
    """curves.png and curves.pdf: the losses and learning rate of `records` (metrics.jsonl's)
    against steps, the run's evaluation (zeroshot.json) marked; process 0 draws them."""
    if not distributed.is_writer() or not records:
        return
    evaluations = []
    try:
        result = json.loads((workdir / "zeroshot.json").read_text())
        evaluations.append({"step": int(result["checkpoint_step"]), "top1": float(result["top1"])})
    except (OSError, ValueError, KeyError, TypeError):
        pass  # no evaluation yet (or not one this run wrote): the curves without a mark
    figure = figures.curves_figure(records, evaluations, title=f"{workdir.name}: pretraining")
    figures.save(figure, workdir / "curves.png")


def evaluate(config, teacher: train.Targets, state: dict, workdir: pathlib.Path) -> dict | None:
    """The zero-shot evaluation after training (config.eval), written to zeroshot.json; None without
    one."""
    if not config.eval.dataset:
        return None
    variables = distributed.local_copy(
        {"params": state["params"], "batch_stats": state["batch_stats"]}
    )
    result = train.evaluate_zeroshot(config, teacher.clip, variables)
    result["checkpoint_step"] = step = int(distributed.local_copy(state["step"]))
    metrics_lib.write_json(workdir / "zeroshot.json", result)
    tensorboard_events.write_summary(
        workdir, "zeroshot", step, {f"zeroshot/{k}": result[k] for k in scoring.ACCURACIES}
    )
    if distributed.is_writer() and (workdir / "metrics.jsonl").is_file():
        records = metrics_lib.read_lines(workdir / "metrics.jsonl", warn=lambda _: None)
        write_curves(workdir, [r for _, r in records if r is not None])
    print(
        f"zero-shot {config.eval.dataset} (test split, N={result['num_paths']}, t={result['t']}, "
        f"ratio={result['ratio']}): top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, "
        f"mean class {result['mean_class_acc']:.4f}"
    )
    return result
