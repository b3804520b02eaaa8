"""The one trainer: `train_and_evaluate(config, workdir)` pretrains Dual Denoising (configs/pretrain.py).

Sections, in order: setup, data, teacher, model/opt, step, restore, evals, loop. Resume order: the
workdir's own latest checkpoint, else `config.init_from` (another run's checkpoint: parameters and
BatchNorm statistics only), else scratch. A finished run (its last checkpoint at the final step) only
re-runs the evaluation if it is missing. Every random choice derives from `config.seed` and the step or
record index (`fold_in(key, step)`; grain's per-record rngs and saved iterator state), so a resumed run
equals an uninterrupted one.
"""
from __future__ import annotations

import json
import pathlib

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ddjax import errors
from ddjax import hosts
from ddjax import metrics as metrics_lib
from ddjax import optim
from ddjax import progress
from ddjax import run_folder
from ddjax import zeroshot
from ddjax.data import pipelines
from ddjax.data import prepare
from ddjax.models import dual_denoising as dd
from ddjax.teachers import cache
from ddjax.teachers import clip

# Every key the trainer reads; anything else in a config is reported (style: fail on unused config).
CONSUMED = {
    "": {"job", "seed", "model", "dataset", "data_dir", "splits", "auto_prepare", "num_points", "batch_size",
         "epochs", "warmup_epochs", "total_steps", "lr", "weight_decay", "teacher", "teacher_mode", "teacher_cache",
         "image_pipeline", "tiny_teacher", "log_every", "checkpoint_every", "keep_checkpoints", "init_from",
         "worker_count", "eval", "distributed", "allow_changes"},
    "tiny_teacher": {"enabled", "steps", "width", "image_size", "projection_dim", "tokenizer_dir"},
    "eval": {"dataset", "data_dir", "npoints", "point_all", "batch_size", "ratio", "num_paths", "t", "template",
             "seed"},
}
TEACHER_MODES = ("online", "cached")


def check_config(config, workdir: str | None = None) -> None:
    """Every value checked before any data, teacher or compilation: ConfigError naming the key."""
    from ddjax.data import image_augment
    unread = [k for k in config.keys() if k not in CONSUMED[""]]
    for section in ("tiny_teacher", "eval"):
        unread += [f"{section}.{k}" for k in config[section].keys() if k not in CONSUMED[section]]
    unread += [f"model.{k}" for k in config.model.keys() if k not in dd.model_config("tiny").keys()]
    if unread:
        raise errors.ConfigError(sorted(unread)[0], f"nothing reads the keys {sorted(unread)} (misspelt or stale?)",
                                 "remove them from the config file")
    errors.require_workdir(workdir, "pretrain", "checkpoints and metrics")
    dd.validate_config(config.model)
    errors.check_choice(config, "dataset", sorted(prepare.DATASETS))
    if config.eval.dataset:
        errors.check_choice(config, "eval.dataset", sorted(prepare.DATASETS))
    if not config.splits or any(s not in ("train", "test") for s in config.splits):
        raise errors.ConfigError("splits", f"must name 'train' and/or 'test', got {tuple(config.splits)}")
    for key in ("batch_size", "num_points", "epochs", "log_every", "checkpoint_every", "keep_checkpoints",
                "eval.npoints", "eval.batch_size", "eval.num_paths", "tiny_teacher.steps", "tiny_teacher.width",
                "tiny_teacher.image_size", "tiny_teacher.projection_dim"):
        errors.check_int(config, key, 1)
    for key in ("total_steps", "warmup_epochs", "worker_count"):
        errors.check_int(config, key, 0)
    errors.check_int(config, "seed")
    errors.check_int(config, "eval.seed")
    errors.check_int(config, "eval.t", 0, config.model.num_timesteps - 1)
    errors.check_int(config, "eval.point_all", config.eval.npoints)
    errors.check_number(config, "lr", 0.0, low_open=True)
    errors.check_number(config, "weight_decay", 0.0)
    errors.check_number(config, "eval.ratio", 0.0)
    errors.check_divisible(config, "batch_size", jax.device_count())
    errors.check_choice(config, "teacher_mode", TEACHER_MODES)
    errors.check_choice(config, "image_pipeline", image_augment.PIPELINES)
    run_folder.parse_allowed(config.allow_changes)
    if config.num_points < max(config.model.num_groups, config.model.group_size):
        raise errors.ConfigError("num_points", f"{config.num_points} points are fewer than the tokenizer needs "
                                 f"(model.num_groups={config.model.num_groups}, model.group_size="
                                 f"{config.model.group_size})")
    if config.teacher_mode == "cached" and not (config.teacher_cache and
                                                pathlib.Path(config.teacher_cache).expanduser().is_dir()):
        raise errors.ConfigError("teacher_cache", f"{config.teacher_cache!r} is not a folder",
                                 "build the bank with configs/teacher_cache.py and pass its --workdir")
    if config.teacher_mode == "online" and not config.tiny_teacher.enabled and not config.teacher:
        raise errors.ConfigError("teacher", "empty", "pass a CLIP hub name or a local directory")
    if config.init_from:
        errors.check_run_dir(config, "init_from")


def _load_teacher(config, workdir: pathlib.Path, train_source, class_texts) -> clip.Teacher:
    if config.tiny_teacher.enabled:
        teacher_dir = workdir / "teacher"

        def train_tiny_teacher():  # process 0 trains it once; the others wait for it, then load it
            if (teacher_dir / "config.json").is_file():
                return
            from ddjax.teachers import tiny_clip
            tiny_clip.train(teacher_dir, train_source, class_texts, image_size=config.tiny_teacher.image_size,
                            width=config.tiny_teacher.width, projection_dim=config.tiny_teacher.projection_dim,
                            steps=config.tiny_teacher.steps, seed=config.seed,
                            tokenizer_dir=config.tiny_teacher.tokenizer_dir or None,
                            image_pipeline=config.image_pipeline)

        hosts.main_first("tiny teacher", train_tiny_teacher, then=lambda: None)
        return clip.load(str(teacher_dir))
    try:
        return clip.load(config.teacher)
    except clip.TeacherLoadError as e:
        raise clip.TeacherLoadError(f"config.teacher={config.teacher}", e.why,
                                    "with internet the hub name downloads on first use; " + e.todo.replace(
                                        "then pass DIR", "then pass --config.teacher=DIR")) from None


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
    # ------------------------------------------------------------------------------------------ setup
    check_config(config, workdir)
    workdir = pathlib.Path(workdir).expanduser().resolve()  # orbax needs absolute paths
    config_json = json.loads(config.to_json_best_effort())
    run_folder.check_same_run(workdir, config_json)  # before anything is written into an existing run
    if hosts.is_writer():
        workdir.mkdir(parents=True, exist_ok=True)
    hosts.barrier("run folder")  # every process checked the folder before process 0 writes into it
    mesh = jax.sharding.Mesh(np.array(hosts.workers()), ("data",))  # process-major: each process's rows together
    data_sharding, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())

    # ------------------------------------------------------------------------------------------- data
    if config.auto_prepare:  # process 0 prepares (downloads, converts); the others then open its files
        builder = hosts.main_first("prepare", lambda: prepare.prepare(config.dataset, config.data_dir),
                                   then=lambda: prepare.open_dataset(config.dataset, config.data_dir))
    else:
        builder = prepare.open_dataset(config.dataset, config.data_dir)
    available = builder.info.features["points"].shape[0]
    if config.num_points > available:
        raise errors.ConfigError("num_points", f"{config.num_points} exceeds the {available} points per cloud of "
                                 f"{config.dataset}", f"use at most {available}")
    source = pipelines.IndexedSource([builder.as_data_source(s) for s in config.splits])
    steps_per_epoch = len(source) // config.batch_size
    if steps_per_epoch < 1:
        raise errors.ConfigError("batch_size", f"{config.batch_size} exceeds the {len(source)} records of "
                                 f"{config.dataset} {tuple(config.splits)}", "use a smaller batch")
    total_steps = config.total_steps or (config.epochs + 1) * steps_per_epoch  # ReCon runs epochs 0..300
    class_texts = cache.class_texts(builder)

    # ---------------------------------------------------------------------------------------- teacher
    teacher = None
    if config.teacher_mode == "online":
        teacher = _load_teacher(config, workdir, builder.as_data_source("train"), class_texts)
        text_bank = jnp.asarray(clip.prompt_bank(teacher, class_texts))  # (C, 20, 3, D)
        image_bank, num_views, teacher_dim = None, 0, teacher.dim
    else:
        text_bank, image_bank, manifest = cache.load(
            config.teacher_cache, dataset=builder.info.full_name, splits=list(config.splits),
            image_pipeline=config.image_pipeline, num_records=len(source))
        num_views, teacher_dim = manifest["views"], manifest["dim"]
    if teacher_dim != config.model.teacher_dim:
        raise errors.ConfigError("model.teacher_dim", f"{config.model.teacher_dim}, but the teacher's features have "
                                 f"{teacher_dim} dimensions", f"set --config.model.teacher_dim={teacher_dim}")
    image_size = teacher.image_size if teacher is not None else 224
    transform = pipelines.PretrainTransform(
        num_points=config.num_points, image_pipeline=config.image_pipeline if teacher is not None else None,
        image_size=image_size, num_views=num_views)
    local_batch = config.batch_size // jax.process_count()
    loader = pipelines.pretrain_loader(source, batch_size=local_batch, seed=config.seed, transform=transform,
                                       worker_count=config.worker_count)
    data_iter = iter(loader)

    # ------------------------------------------------------------------------------------- model/opt
    loss_fn = dd.make_train_loss(config.model)
    schedule = optim.epoch_schedule(base_lr=config.lr, warmup_epochs=config.warmup_epochs, epochs=config.epochs,
                                    steps_per_epoch=steps_per_epoch)
    tx = optim.adamw(schedule, weight_decay=config.weight_decay)
    root_key = jax.random.key(config.seed)
    init_key, loop_key = jax.random.split(root_key)

    @jax.jit
    def init_state(key):
        variables = dd.init_variables(config.model, key)
        return {"params": variables["params"], "batch_stats": variables["batch_stats"],
                "opt": tx.init(variables["params"]), "step": jnp.zeros((), jnp.int32)}

    abstract_state = jax.eval_shape(init_state, init_key)
    state_sharding = jax.tree_util.tree_map(lambda _: replicated, abstract_state)
    teacher_source = teacher.source if teacher is not None else config.teacher_cache
    metrics_lib.write_json(workdir / "config.json", config_json | {
        "resolved": {"teacher": run_folder.store_path(workdir, teacher_source),  # './teacher' inside the run
                     "teacher_dim": teacher_dim, "image_size": image_size, "class_texts": class_texts,
                     "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
                     "dataset_full_name": builder.info.full_name}})
    metrics_lib.write_json(workdir / "model_summary.json", dd.parameter_counts(config.model))

    # ------------------------------------------------------------------------------------------ step
    teacher_params = teacher.params if teacher is not None else None

    def train_step(state, batch, teacher_params, text_bank, image_bank):
        step = state["step"]
        key = jax.random.fold_in(loop_key, step)
        if teacher is not None:
            targets = cache.online_targets(teacher, teacher_params, text_bank, batch)
        else:
            targets = cache.cached_targets(image_bank, text_bank, batch)
        model_batch = {"points": batch["points"], **targets}

        def objective(params):
            return loss_fn({"params": params, "batch_stats": state["batch_stats"]}, model_batch, key)

        (loss, (metrics, batch_stats)), grads = jax.value_and_grad(objective, has_aux=True)(state["params"])
        updates, opt = tx.update(grads, state["opt"], state["params"])
        params = jax.tree_util.tree_map(lambda p, u: p + u, state["params"], updates)
        norm = lambda tree: jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree_util.tree_leaves(tree)))
        metrics = {"loss": loss, "loss_rec": metrics["loss_recon"], "loss_image": metrics["loss_image"],
                   "loss_text": metrics["loss_text"], "chamfer": metrics["chamfer"], "lr": schedule(step),
                   "grad_norm": norm(grads), "param_norm": norm(params), "update_norm": norm(updates)}
        return {"params": params, "batch_stats": batch_stats, "opt": opt, "step": step + 1}, metrics

    step_fn = jax.jit(train_step, donate_argnums=(0,), out_shardings=(state_sharding, replicated))

    # --------------------------------------------------------------------------------------- restore
    manager = ocp.CheckpointManager(
        workdir / "checkpoints",
        options=ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, enable_async_checkpointing=True,
                                             create=True))
    restore_target = jax.tree_util.tree_map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), abstract_state, state_sharding)
    start = manager.latest_step()
    if start is not None:
        _check_process_count(workdir / "checkpoints" / str(start))
        state = _restore_state(manager, start, workdir / "checkpoints", restore_target, state_sharding, data_iter)
        print(f"resumed from {workdir / 'checkpoints' / str(start)}")
    else:
        start = 0
        state = jax.jit(init_state, out_shardings=state_sharding)(init_key)
        if config.init_from:
            state = _init_from(config.init_from, state, restore_target, state_sharding)
            print(f"initialised parameters from {config.init_from}")

    # ----------------------------------------------------------------------------------------- evals
    def run_eval() -> dict | None:
        if not config.eval.dataset:
            return None
        result = evaluate_zeroshot(config, teacher, hosts.local_copy({"params": state["params"],
                                                                      "batch_stats": state["batch_stats"]}))
        result["checkpoint_step"] = int(hosts.local_copy(state["step"]))
        metrics_lib.write_json(workdir / "zeroshot.json", result)
        print(f"zero-shot {config.eval.dataset} (test split, N={result['N']}, t={result['t']}, "
              f"ratio={result['ratio']}): top-1 {result['top1']:.4f}, top-5 {result['top5']:.4f}, "
              f"mean class {result['mean_class_acc']:.4f}")
        return result

    if start >= total_steps:
        print(f"run already finished at step {start} (of {total_steps})")
        manager.close()
        if config.eval.dataset and not (workdir / "zeroshot.json").is_file():
            return {"step": start, "zeroshot": run_eval()}
        return {"step": start}

    # ------------------------------------------------------------------------------------------ loop
    # The metric lines (step/total, rate, ETA) are the progress in a log; a terminal also gets an in-place bar.
    bar = progress.bar(total=total_steps, initial=start, desc="pretraining", unit="step") \
        if progress.on_terminal() else None
    writer = metrics_lib.MetricWriter(str(workdir), total_steps, start,
                                      echo=bar.write if bar is not None else lambda line: print(line, flush=True))
    print(f"pretraining {config.model.variant} Dual Denoising ({dd.parameter_counts(config.model)['total'] / 1e6:.2f}M "
          f"parameters) on {config.dataset}: {total_steps} steps of batch {config.batch_size} "
          f"({steps_per_epoch} steps/epoch) on {jax.device_count()} {jax.default_backend()} device(s)")
    last = {}
    for step in range(start, total_steps):
        local = next(data_iter)
        batch = {k: jax.make_array_from_process_local_data(data_sharding, np.asarray(v)) for k, v in local.items()}
        state, metrics = step_fn(state, batch, teacher_params, text_bank, image_bank)
        loss = float(hosts.local_copy(metrics["loss"]))  # one scalar per step: names the exact step of a non-finite loss
        if not np.isfinite(loss):
            raise errors.UserError(workdir, f"non-finite loss {loss} at step {step} (steps {start}..{step} ran in "
                                   f"this process; the last checkpoint is step {manager.latest_step()})",
                                   "lower --config.lr or check the data; a new run needs another --workdir")
        done = step + 1
        if step == start:  # what a user waits for: imports, data, teacher, compilation and one step
            writer.echo(progress.first_step_line())
        if bar is not None:
            bar.update(1)
        if done % config.log_every == 0 or done == total_steps:
            last = writer.write(done, hosts.local_copy(metrics))
        if done % config.checkpoint_every == 0 or done == total_steps:
            manager.save(done, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                       data=grain.checkpoint.CheckpointSave(data_iter)))
    if bar is not None:
        bar.close()
    manager.wait_until_finished()
    manager.close()
    return {"step": total_steps, "metrics": last, "zeroshot": run_eval()}


def _check_process_count(checkpoint: pathlib.Path) -> None:
    """A checkpoint holds one data-iterator state per process: resuming needs as many processes as saved it."""
    import re
    saved = {int(m[1]) for f in (checkpoint / "data").glob("process_*-of-*.json")
             if (m := re.fullmatch(r"process_\d+-of-(\d+)\.json", f.name))}
    if saved and saved != {jax.process_count()}:
        count = min(saved)
        raise errors.UserError(checkpoint, f"written by {count} process{'es' if count > 1 else ''}, resumed by "
                               f"{jax.process_count()} (each process saved its own data-iterator position)",
                               f"resume with {count} process{'es' if count > 1 else ''} (--num_processes={count}), "
                               "or start a new run with --config.init_from=THIS_RUN")


def _restore_state(manager, step: int, directory: pathlib.Path, target: dict, sharding, data_iter=None) -> dict:
    """The train state of checkpoint `step` (and the data iterator's position into `data_iter`). A checkpoint
    saved before the block stacks were scanned (`encoder/block00`, ...) is read in its own layout and stacked
    (dd.stack_layers: the same parameters and optimiser moments); the run's next checkpoint is in today's."""
    legacy = dd.is_unrolled(run_folder.state_metadata(directory, step))
    items = {"state": ocp.args.StandardRestore(dd.unstack_layers(target) if legacy else target)}
    if data_iter is not None:
        items["data"] = grain.checkpoint.CheckpointRestore(data_iter)
    state = run_folder.restore(manager, step, ocp.args.Composite(**items), directory)["state"]
    if legacy:
        state = jax.jit(dd.stack_layers, out_shardings=sharding)(state)  # also for arrays across processes
        print(f"read {directory / str(step)} in the unrolled layout of earlier ddjax versions (converted; later "
              "checkpoints use the scanned layout)")
    return state


def _init_from(run_dir: str, state: dict, restore_target: dict, sharding) -> dict:
    """Parameters and BatchNorm statistics from another run's latest checkpoint (fresh optimiser, step 0)."""
    directory = pathlib.Path(run_dir).expanduser().resolve() / "checkpoints"
    other = ocp.CheckpointManager(directory)
    step = other.latest_step()
    if step is None:
        raise errors.ConfigError("init_from", f"{run_dir} has no checkpoint in {run_dir}/checkpoints",
                                 "pass a run that has saved one")
    restored = _restore_state(other, step, directory, restore_target, sharding)
    other.close()
    return {**state, "params": restored["params"], "batch_stats": restored["batch_stats"]}


def evaluate_zeroshot(config, teacher: clip.Teacher | None, variables) -> dict:
    """Zero-shot top-1/top-5 on `config.eval.dataset`'s test split with the paper's scoring."""
    ev = config.eval
    builder = zeroshot.open_eval_dataset(ev.dataset, ev.data_dir)
    if teacher is None:
        raise ValueError("zero-shot evaluation needs the text teacher: use teacher_mode='online' or the zeroshot job")
    classnames = cache.class_texts(builder)
    text_features = zeroshot.class_text_features(teacher, classnames, ev.template)
    batches = zeroshot.load_batches(builder.as_data_source("test"), npoints=ev.npoints, point_all=ev.point_all,
                                    batch_size=ev.batch_size, seed=ev.seed,
                                    normalize=not ev.dataset.startswith("scanobjectnn"))
    infer, _ = dd.make_inference(config.model)
    infer = jax.jit(infer, static_argnames=("t", "num_paths"))
    result = zeroshot.evaluate(infer, variables, batches, text_features, ratio=ev.ratio, t=ev.t,
                               num_paths=ev.num_paths, key=jax.random.key(ev.seed),
                               feature_types=tuple(config.model.feature_types))
    result.update({"dataset": ev.dataset, "teacher": teacher.source, "class_names": classnames})
    return result
