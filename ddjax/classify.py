"""Open-vocabulary classification of a user's own file (the classify job, configs/classify.py).

Reads .npy, .txt/.xyz, .ply, .off or .obj (meshes are surface-sampled), normalises the cloud to the unit
ball as in training, subsamples it as the zero-shot protocol does (FPS, then a seeded choice), runs
parallel noise inference with the run's model and teacher, and ranks the given labels by cosine score.
Prints one line per label and, as its last line, the same as JSON.
"""
from __future__ import annotations

import json
import pathlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ddjax import errors
from ddjax import zeroshot
from ddjax.data import pipelines
from ddjax.data import readers
from ddjax.models import dual_denoising as dd
from ddjax.teachers import clip
from ddjax.teachers import prompts
from kernels import fps


def load_cloud(path, *, npoints: int, point_all: int, need: int, mesh_points: int, seed: int) -> np.ndarray:
    """The file as the model sees it: f32[1, n, 3] with n = min(npoints, available points)."""
    rng = np.random.default_rng(seed)
    vertices, faces = readers.read_points_file(path)
    points = readers.sample_surface(vertices, faces, mesh_points, rng, str(path)) if faces is not None else vertices
    if len(points) < need:
        raise readers.PointFileError(path, f"{len(points)} points, fewer than the {need} the tokenizer needs")
    points = pipelines.normalize_unit_ball(points.astype(np.float64)).astype(np.float32)
    n_all = min(point_all, len(points))
    idx = np.asarray(fps(points[None], n_all))[0]  # (n_all,), FPS from index 0
    choice = rng.choice(n_all, min(npoints, n_all), replace=False)
    return points[idx][choice][None]


def check_config(config) -> tuple[list[str], dict]:
    """The candidate labels and the run's recorded config, every value checked before any work."""
    labels = [label.strip() for label in str(config.labels).split(",") if label.strip()]
    if not labels:
        raise errors.ConfigError("labels", "no candidate labels", 'pass them, e.g. --config.labels="chair,table,lamp"')
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise errors.ConfigError("labels", f"{repeated} listed more than once", "list each label once")
    if not config.input:
        raise errors.ConfigError("input", "no file given", "pass the file to classify with --config.input=FILE")
    path = pathlib.Path(config.input).expanduser()
    if not path.is_file():
        raise errors.ConfigError("input", f"{config.input} does not exist or is not a file", "check the path")
    if path.suffix.lower() not in readers.POINT_FILE_SUFFIXES:
        raise errors.ConfigError("input", f"unsupported file type {path.suffix!r}",
                                 f"use one of {readers.POINT_FILE_SUFFIXES}")
    run_config = zeroshot.read_run_config(errors.check_run_dir(config, "checkpoint"))
    errors.check_int(config, "npoints", 1)
    errors.check_int(config, "point_all", config.npoints)
    errors.check_int(config, "mesh_points", 1)
    zeroshot.check_noise_setting(config, run_config)
    errors.check_number(config, "ratio", 0.0)
    errors.check_choice(config, "template", prompts.TEMPLATES)
    errors.check_int(config, "seed")
    return labels, run_config


def run(config, workdir: str | None = None) -> dict:
    labels, run_config = check_config(config)
    model = run_config["model"]
    points = load_cloud(config.input, npoints=config.npoints, point_all=config.point_all,
                        need=max(model["num_groups"], model["group_size"]), mesh_points=config.mesh_points,
                        seed=config.seed)  # a bad file is refused before the checkpoint is read
    run_config, variables, _ = zeroshot.restore_run(config.checkpoint)
    model_config = ml_collections.ConfigDict(run_config["model"])
    teacher = clip.load(run_config["resolved"]["teacher"])
    text = jnp.asarray(zeroshot.class_text_features(teacher, labels, config.template))
    infer, _ = dd.make_inference(model_config)
    feats = jax.jit(infer, static_argnames=("t", "num_paths"))(variables, jnp.asarray(points),
                                                               jax.random.key(config.seed), t=config.t,
                                                               num_paths=config.num_paths)
    scores = np.asarray(zeroshot.cosine_logits(zeroshot.ensemble(feats, config.ratio,
                                                                 tuple(model_config.feature_types)), text))[0]
    order = np.argsort(-scores, kind="stable")
    ranking = [{"label": labels[i], "score": float(scores[i])} for i in order]
    for r in ranking:
        print(f"{r['score']:8.4f}  {r['label']}")
    result = {"file": str(pathlib.Path(config.input)), "ranking": ranking, "N": config.num_paths, "t": config.t,
              "ratio": config.ratio}
    print(json.dumps(result))
    return result
