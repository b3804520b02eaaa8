"""Open-vocabulary classification of a user's own files (the classify job, configs/classify.py).

Reads .npy, .txt/.xyz, .ply, .off, .obj, .glb, .gltf or .stl (meshes are surface-sampled),
normalises each cloud to the unit ball as in training, subsamples it as the zero-shot protocol does
(FPS, then a seeded choice), runs parallel noise inference with the run's model, and ranks the given
labels by cosine score against their text features. `--config.input` takes a comma-separated list
of files and glob patterns: every file is read (and a bad one refused) before the checkpoint is
restored; the model is restored and its inference compiled once per call (clouds of one size share
the compiled function); the labels' text features are cached in the run folder (keyed by teacher,
template and labels), so a later call needs no teacher at all. Each file gets the same noise and
subsampling seed, so a file ranks the same alone or among others. Prints one line per file (its
labels, best first, with scores), then one JSON object per file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import pathlib
import re

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ddjax import (
    checkpoints,
    config_checks,
    errors,
    evaluation,
    progress,
    run_folder,
    scoring,
)
from ddjax.data import pipelines, prepare, readers
from ddjax.models import registry
from ddjax.teachers import clip, prompts, sanity
from kernels import fps

KEYS = {
    "": {
        "job",
        "checkpoint",
        "input",
        "labels",
        "dataset",
        "data_dir",
        "text_features",
        "npoints",
        "point_all",
        "mesh_points",
        "num_paths",
        "t",
        "ratio",
        "template",
        "seed",
    }
}


def load_cloud(
    path, *, npoints: int, point_all: int, need: int, mesh_points: int, seed: int
) -> np.ndarray:
    """The file as the model sees it: f32[1, n, 3] with n = min(npoints, available points)."""
    rng = np.random.default_rng(seed)
    vertices, faces = readers.read_points_file(path)
    points = (
        readers.sample_surface(vertices, faces, mesh_points, rng, str(path))
        if faces is not None
        else vertices
    )
    if len(points) < need:
        raise readers.PointFileError(
            path, f"{len(points)} points, fewer than the {need} the tokenizer needs"
        )
    points = pipelines.normalize_unit_ball(points.astype(np.float64)).astype(np.float32)
    if not point_all:  # a peer's own input: as stored, or FPS to npoints (pipelines.as_stored)
        if npoints >= len(points):
            return points[None]
        return points[np.asarray(fps(points[None], npoints))[0]][None]
    n_all = min(point_all, len(points))
    idx = np.asarray(fps(points[None], n_all))[0]  # (n_all,), FPS from index 0
    choice = rng.choice(n_all, min(npoints, n_all), replace=False)
    return points[idx][choice][None]


def split_inputs(text: str) -> list[str]:
    """config.input's items: split at commas, except an escaped one ('a\\,b.xyz' is the file
    'a,b.xyz'); the whole text is one item when it names an existing file."""
    text = str(text).strip()
    if text and os.path.isfile(os.path.expanduser(text)):
        return [text]
    items = re.split(r"(?<!\\),", text)  # ',' not after a backslash
    return [item.replace("\\,", ",").strip() for item in items]


def expand_inputs(text: str) -> list[pathlib.Path]:
    """config.input: comma-separated files and glob patterns (`split_inputs`) -> the files, in the
    order given (each pattern's matches sorted); ConfigError for a missing file, a pattern that
    matches nothing, a folder or an unsupported type."""
    files = []
    for item in split_inputs(text):
        if not item:
            continue
        pattern = str(pathlib.Path(item).expanduser())
        if glob.has_magic(pattern):
            matches = sorted(
                p for p in glob.glob(pattern, recursive=True) if pathlib.Path(p).is_file()
            )
            if not matches:
                raise errors.ConfigError("input", f"{item!r} matches no file", "check the pattern")
            files += [pathlib.Path(p) for p in matches]
        else:
            if not pathlib.Path(pattern).is_file():
                raise errors.ConfigError(
                    "input", f"{item} does not exist or is not a file", "check the path"
                )
            files.append(pathlib.Path(pattern))
    if not files:
        raise errors.ConfigError(
            "input", "no file given", "pass the files to classify with --config.input=FILE[,...]"
        )
    for path in files:
        if path.suffix.lower() not in readers.POINT_FILE_SUFFIXES:
            raise errors.ConfigError(
                "input",
                f"unsupported file type {path.suffix!r} ({path})",
                f"use one of {readers.POINT_FILE_SUFFIXES}",
            )
    return files


def check_headers(files: list[pathlib.Path]) -> None:
    """Every file's cheap check (`readers.check_header`) before any file is read whole: a bad file
    sorted last is refused at once, its place among the files in the line."""
    for i, path in enumerate(files, 1):
        try:
            readers.check_header(path)
        except readers.PointFileError as e:
            if len(files) == 1:
                raise
            place = f"file {i} of {len(files)}; every file's header is checked before any is read"
            raise readers.PointFileError(e.where, f"{e.why} ({place})", e.todo) from None


def check_config(config, workdir: str | None = None) -> tuple[list[str], dict, list[pathlib.Path]]:
    """The candidate labels, the run's recorded config and the input files, every value checked
    first."""
    config_checks.check_keys(config, KEYS)
    labels = [label.strip() for label in str(config.labels).split(",") if label.strip()]
    if config.dataset:
        labels = dataset_labels(config, labels)
    run_config = checkpoints.read_run_config(config_checks.check_run_dir(config, "checkpoint"))
    if not config.text_features and not run_config.get("resolved", {}).get("teacher", "x"):
        # a converted peer: its own text-features file that names the labels
        config.text_features = evaluation.run_text_features_with(config.checkpoint, labels)
    names = evaluation.check_text_source(config, run_config)
    if names is not None:  # the labels are the file's names (or a subset of them)
        unknown = [label for label in labels if label not in names]
        if unknown:
            raise errors.ConfigError(
                "labels",
                f"{unknown} are not in the text features' class names",
                f"choose from {names[:10]}{' ...' if len(names) > 10 else ''}",
            )
        labels = labels or names
    if not labels:
        raise errors.ConfigError(
            "labels", "no candidate labels", 'pass them, e.g. --config.labels="chair,table,lamp"'
        )
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise errors.ConfigError(
            "labels", f"{repeated} listed more than once", "list each label once"
        )
    files = expand_inputs(config.input)
    check_headers(files)
    config_checks.check_int(config, "npoints", 1)
    config_checks.check_int(config, "point_all", config.npoints)
    evaluation.input_points(config, run_config["model"])
    config_checks.check_int(config, "mesh_points", 1)
    evaluation.check_noise_setting(config, run_config)
    evaluation.check_memory(run_config, 1, config.num_paths, config.t)  # a cloud at a time
    config_checks.check_number(config, "ratio", 0.0)
    config_checks.check_choice(config, "template", prompts.TEMPLATES)
    config_checks.check_seed(config)
    return labels, run_config, files


def dataset_labels(config, labels: list[str]) -> list[str]:
    """The prompt names of config.dataset's classes (a prepared dataset: modelnet40, folder/NAME,
    ...), the candidate labels; ConfigError when --config.labels is given too."""
    prepare.check_dataset(config)
    if labels:
        raise errors.ConfigError(
            "labels",
            f"labels given with --config.dataset={config.dataset}, which names the labels",
            "pass one of the two",
        )
    builder = prepare.open_dataset(config.dataset, config.data_dir)
    return evaluation.classnames_for(config.dataset, builder, "toilet")  # spelt right


def usable_label_cache(features: np.ndarray, num_labels: int, dim: int) -> bool:
    """A cached f32[L, D] is used only when its shape is (labels, the model's teacher_dim), its
    values are finite and no row is zero (a zero row scores every cloud 0: a damaged write)."""
    return (
        features.dtype.kind == "f"
        and features.shape == (num_labels, dim)
        and bool(np.isfinite(features).all())
        and bool((np.abs(features).max(axis=1) > 0).all())
    )


def label_features(
    run_dir: pathlib.Path, stored_teacher: str, labels: list[str], template: str, dim: int
) -> np.ndarray:
    """f32[L, D] text features of `labels`, cached in the run folder per (teacher, template,
    labels): the teacher is loaded only when the cache has no usable entry (absent, damaged, of
    the wrong shape or zeros: `usable_label_cache`), which is then written again."""
    digest = hashlib.sha1(json.dumps([stored_teacher, template, labels]).encode()).hexdigest()[:16]
    path = run_dir / f"classify_text_{digest}.npy"
    try:
        features = np.load(path, allow_pickle=False)
        if usable_label_cache(features, len(labels), dim):
            return features
    except (OSError, ValueError, EOFError):
        pass  # absent or damaged: computed again
    teacher = clip.load(run_folder.resolve_path(run_dir, stored_teacher))
    features = scoring.class_text_features(teacher, labels, template)
    try:
        run_folder.save_npy(path, features)
    except OSError:  # a read-only run folder: no cache
        pass
    return features


def run(config, workdir: str | None = None) -> list[dict]:
    # `recorded`: config.json as stored ('./teacher' inside)
    labels, recorded, files = check_config(config)
    model = recorded["model"]
    need = max(model["num_groups"], model["group_size"])
    reading = (
        progress.bar(files, total=len(files), desc="classify: reading", unit="file", every=10.0)
        if len(files) > 1
        else files
    )  # a bad file is refused before the checkpoint is read
    clouds = [
        load_cloud(
            f,
            npoints=config.npoints,
            point_all=config.point_all,
            need=need,
            mesh_points=config.mesh_points,
            seed=config.seed,
        )
        for f in reading
    ]
    run_dir = pathlib.Path(config.checkpoint).expanduser().resolve()
    run_config, variables, _ = checkpoints.restore_run(run_dir)
    model_config = ml_collections.ConfigDict(run_config["model"])
    if config.get("text_features"):
        table, names = evaluation.read_text_features(config.text_features, model_config.teacher_dim)
        text = table[[names.index(label) for label in labels]]  # (L, D)
        source = f"config.text_features={config.text_features}"
    else:
        stored = recorded["resolved"]["teacher"]
        text = label_features(run_dir, stored, labels, config.template, model_config.teacher_dim)
        source = f"the run's teacher {run_folder.resolve_path(run_dir, stored)}"
    sanity.check_class_features(text, labels, source)
    text = jnp.asarray(text)
    inference = registry.inference(model_config)
    num_paths, t = inference.setting(config.num_paths, config.t)

    @jax.jit
    def scores_fn(variables, points, key):  # one compilation per cloud size
        feats = inference.infer(variables, points, key, t=t, num_paths=num_paths)
        logits, status = scoring.point_logits(feats, config.ratio, text, inference.feature_types)
        return logits[0], status

    results = []
    for path, points in zip(files, clouds):
        scores, status = scores_fn(variables, jnp.asarray(points), jax.random.key(config.seed))
        scoring.require_finite(status, ratio=config.ratio, clouds=f"clouds ({path})")
        scores = np.asarray(scores)
        order = np.argsort(-scores, kind="stable")
        ranking = [{"label": labels[i], "score": float(scores[i])} for i in order]
        results.append(
            {
                "file": str(path),
                "ranking": ranking,
                "num_paths": num_paths,
                "t": t,
                "ratio": config.ratio,
            }
        )
        print(
            f"{path}: " + ", ".join(f"{r['label']} {r['score']:.4f}" for r in ranking), flush=True
        )
        if len(results) == 1:
            print(progress.first_step_line(), flush=True)
    for result in results:
        print(json.dumps(result))
    return results
