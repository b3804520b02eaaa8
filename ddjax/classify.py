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

from ddjax import zeroshot
from ddjax.data import pipelines
from ddjax.data import readers
from ddjax.models import dual_denoising as dd
from ddjax.teachers import clip
from kernels import fps


def load_cloud(path, *, npoints: int, point_all: int, need: int, mesh_points: int, seed: int) -> np.ndarray:
    """The file as the model sees it: f32[1, n, 3] with n = min(npoints, available points)."""
    rng = np.random.default_rng(seed)
    vertices, faces = readers.read_points_file(path)
    points = readers.sample_surface(vertices, faces, mesh_points, rng, str(path)) if faces is not None else vertices
    if len(points) < need:
        raise readers.PointFileError(f"{path}: {len(points)} points, fewer than the {need} the tokenizer needs")
    points = pipelines.normalize_unit_ball(points.astype(np.float64)).astype(np.float32)
    n_all = min(point_all, len(points))
    idx = np.asarray(fps(points[None], n_all))[0]  # (n_all,), FPS from index 0
    choice = rng.choice(n_all, min(npoints, n_all), replace=False)
    return points[idx][choice][None]


def run(config, workdir: str | None = None) -> dict:
    labels = [label.strip() for label in config.labels.split(",") if label.strip()]
    if not labels:
        raise ValueError('classify: pass the candidate labels, e.g. --config.labels="chair,table,lamp"')
    if not config.input:
        raise ValueError("classify: pass the file to classify with --config.input=FILE")
    run_config, variables, _ = zeroshot.restore_run(config.checkpoint) if config.checkpoint else (None, None, None)
    if run_config is None:
        raise ValueError("classify: pass --config.checkpoint=RUN_DIR (a configs/pretrain.py run directory)")
    model_config = ml_collections.ConfigDict(run_config["model"])
    points = load_cloud(config.input, npoints=config.npoints, point_all=config.point_all,
                        need=max(model_config.num_groups, model_config.group_size), mesh_points=config.mesh_points,
                        seed=config.seed)
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
