"""Zero-shot classification with parallel noise inference (paper Eq. 1 and 4; spec sections 4.3-4.4, 6.2).

Per test cloud: the mean over N noise paths of the raw (image, text) feature predictions, the ensemble
ratio * text + image, and the cosine with each class's text feature (the plain sum of its prompt
embeddings); the prediction is the argmax.
"""
from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from ddjax.teachers import clip, prompts


def class_text_features(teacher: clip.Teacher, classnames, template: str = "recon") -> np.ndarray:
    """f32[C, D]: per class, the sum of the raw text features of its prompts (60 for ReCon's set)."""
    return np.asarray(clip.class_text_features(teacher, list(classnames), template=template))


def ensemble(features: jax.Array, ratio: float, feature_types=("image", "text")) -> jax.Array:
    """features f32[B, k, D] (raw, path-averaged) -> ratio * text + image, f32[B, D] (spec 2.8)."""
    image = features[:, feature_types.index("image")]
    text = features[:, feature_types.index("text")]
    return ratio * text + image


def cosine_logits(point_features: jax.Array, text_features: jax.Array, scale: float = 1.0) -> jax.Array:
    """scale * cosine similarity: (B, D) x (C, D) -> (B, C)."""
    p = point_features / jnp.linalg.norm(point_features, axis=-1, keepdims=True)
    t = text_features / jnp.linalg.norm(text_features, axis=-1, keepdims=True)
    return scale * jnp.einsum("bd,cd->bc", p, t)


def accuracy_report(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """top1, top5, mean_class_acc (fractions) and per_class accuracy (None for classes absent from labels)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    pred = logits.argmax(axis=1)
    k = min(5, logits.shape[1])
    top5 = (np.argsort(-logits, axis=1, kind="stable")[:, :k] == labels[:, None]).any(axis=1)
    per_class = [float((pred[labels == c] == c).mean()) if (labels == c).any() else None
                 for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return {"top1": float((pred == labels).mean()), "top5": float(top5.mean()),
            "mean_class_acc": float(np.mean(present)), "per_class": per_class, "num_samples": int(len(labels))}


def evaluate(infer, variables, batches: Iterable[dict], text_features, *, ratio: float, t: int, num_paths: int,
             key: jax.Array, feature_types=("image", "text")) -> dict:
    """Runs `infer` (jitted, static t/num_paths) batch by batch; batch i uses fold_in(key, i)."""
    text_features = jnp.asarray(text_features)
    all_logits, all_labels = [], []
    for i, batch in enumerate(batches):
        feats = infer(variables, jnp.asarray(batch["points"]), jax.random.fold_in(key, i), t=t, num_paths=num_paths)
        all_logits.append(np.asarray(cosine_logits(ensemble(feats, ratio, feature_types), text_features)))
        all_labels.append(np.asarray(batch["label"]))
    logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
    report = accuracy_report(logits, labels, text_features.shape[0])
    report.update({"N": num_paths, "t": t, "ratio": ratio})
    return report


def restore_run(run_dir: str) -> tuple[dict, dict, int]:
    """(run config as a dict, variables {'params', 'batch_stats'}, step) of a pretraining run's latest
    checkpoint, restored into the shapes of its own model config."""
    import json
    import pathlib

    import ml_collections
    import orbax.checkpoint as ocp

    from ddjax.models import dual_denoising as dd

    root = pathlib.Path(run_dir).expanduser().resolve()
    if not (root / "config.json").is_file():
        raise FileNotFoundError(f"{root} is not a pretraining run directory (no config.json); pass "
                                "--config.checkpoint=RUN_DIR of a configs/pretrain.py run")
    run_config = json.loads((root / "config.json").read_text())
    model_config = ml_collections.ConfigDict(run_config["model"])
    manager = ocp.CheckpointManager(root / "checkpoints")
    step = manager.latest_step()
    if step is None:
        raise FileNotFoundError(f"no checkpoint in {root / 'checkpoints'}")
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    manager.close()
    state = restored["state"]
    variables = {"params": state["params"], "batch_stats": state["batch_stats"]}
    shapes = jax.eval_shape(lambda k: dd.init_variables(model_config, k), jax.random.key(0))
    jax.tree_util.tree_map(lambda a, b: None, shapes, variables)  # raises if the trees differ
    return run_config, variables, int(step)


def classnames_for(dataset: str, builder, scan_spelling: str) -> list[str]:
    """Prompt class names: ScanObjectNN's fixed list (with the chosen spelling), else the dataset's texts."""
    if dataset.startswith("scanobjectnn"):
        return list(prompts.scanobjectnn_classes(scan_spelling))
    from ddjax.teachers import cache
    return cache.class_texts(builder)


def save_confusion_png(path, logits: np.ndarray, labels: np.ndarray, num_classes: int, cell: int = 12) -> None:
    """Row-normalised confusion matrix (true class rows, predicted columns) as a grey-scale PNG."""
    from PIL import Image
    counts = np.zeros((num_classes, num_classes))
    np.add.at(counts, (labels, logits.argmax(axis=1)), 1)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    image = (255 * (1 - rows)).astype(np.uint8).repeat(cell, 0).repeat(cell, 1)
    Image.fromarray(image).save(path)


def run(config, workdir: str | None) -> dict:
    """The zeroshot job (configs/zeroshot.py)."""
    import json
    import os
    import pathlib

    import ml_collections

    from ddjax.data import pipelines
    from ddjax.data import prepare
    from ddjax.models import dual_denoising as dd

    if not config.checkpoint:
        raise ValueError("zeroshot: pass --config.checkpoint=RUN_DIR (a configs/pretrain.py run directory)")
    if not workdir:
        raise ValueError("zeroshot: pass --workdir=DIR for zeroshot.json and confusion.png")
    out = pathlib.Path(workdir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    run_config, variables, step = restore_run(config.checkpoint)
    model_config = ml_collections.ConfigDict(run_config["model"])
    if config.num_groups:
        model_config.num_groups, model_config.group_size = config.num_groups, config.group_size
    builder = (prepare.prepare(config.dataset, config.data_dir) if config.dataset.startswith("synthetic")
               else prepare.open_dataset(config.dataset, config.data_dir))
    teacher = clip.load(run_config["resolved"]["teacher"])
    names = classnames_for(config.dataset, builder, config.scan_spelling)
    import hashlib
    digest = hashlib.sha1(json.dumps([teacher.source, config.template, names]).encode()).hexdigest()[:12]
    cache_file = out / f"text_features_{digest}.npy"  # computed once per (teacher, prompts, classes)
    if cache_file.is_file():
        text_features = np.load(cache_file, allow_pickle=False)
    else:
        text_features = class_text_features(teacher, names, config.template)
        np.save(cache_file, text_features)
    batches = pipelines.zeroshot_batches(builder.as_data_source("test"), npoints=config.npoints,
                                         point_all=config.point_all, batch_size=config.batch_size, seed=config.seed,
                                         normalize=config.normalize)
    infer, _ = dd.make_inference(model_config)
    infer = jax.jit(infer, static_argnames=("t", "num_paths"))
    text = jnp.asarray(text_features)
    logits, labels = [], []
    key = jax.random.key(config.seed)
    for i, batch in enumerate(batches):
        feats = infer(variables, jnp.asarray(batch["points"]), jax.random.fold_in(key, i), t=config.t,
                      num_paths=config.num_paths)
        logits.append(np.asarray(cosine_logits(ensemble(feats, config.ratio, tuple(model_config.feature_types)), text)))
        labels.append(np.asarray(batch["label"]))
    logits, labels = np.concatenate(logits), np.concatenate(labels)
    result = accuracy_report(logits, labels, len(names))
    result.update({"N": config.num_paths, "t": config.t, "ratio": config.ratio, "dataset": config.name,
                   "checkpoint": str(pathlib.Path(config.checkpoint).expanduser().resolve()),
                   "checkpoint_step": step, "teacher": teacher.source, "class_names": names,
                   "num_groups": model_config.num_groups, "group_size": model_config.group_size})
    tmp = out / "zeroshot.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out / "zeroshot.json")
    save_confusion_png(out / "confusion.png", logits, labels, len(names))
    print(f"zero-shot {config.name}: top-1 {result['top1']:.4f}  top-5 {result['top5']:.4f}  "
          f"mean class {result['mean_class_acc']:.4f}  (N={config.num_paths}, t={config.t}, ratio={config.ratio}, "
          f"{result['num_samples']} test shapes, checkpoint step {step})")
    return result
