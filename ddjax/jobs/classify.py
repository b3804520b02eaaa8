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
    exported_classifier,
    progress,
    scoring,
)
from ddjax.data import pipelines, readers
from ddjax.models import registry
from ddjax.teachers import sanity
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
    points = readers.read_cloud(path, mesh_points, rng)
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
    labels, run_config = evaluation.check_labels(config)
    files = expand_inputs(config.input)
    check_headers(files)
    config_checks.check_int(config, "npoints", 1)
    config_checks.check_int(config, "point_all", config.npoints)
    evaluation.input_points(config, run_config["model"])
    config_checks.check_int(config, "mesh_points", 1)
    evaluation.check_noise_setting(config, run_config)
    evaluation.check_memory(run_config, 1, config.num_paths, config.t)  # a cloud at a time
    config_checks.check_number(config, "ratio", 0.0)
    config_checks.check_seed(config)
    return labels, run_config, files


def run(config, workdir: str | None = None) -> list[dict]:
    if exported_classifier.is_export(config.checkpoint):
        return run_exported(config)
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
    text, source = evaluation.labels_text_features(config, recorded, run_dir, labels)
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
        results.append(report(path, np.asarray(scores), labels, num_paths, t, config.ratio))
        if len(results) == 1:
            print(progress.first_step_line(), flush=True)
    for result in results:
        print(json.dumps(result))
    return results


def report(path, scores: np.ndarray, labels, num_paths: int, t: int, ratio: float) -> dict:
    """One file's result (its labels ranked by score), printed as a line."""
    order = np.argsort(-scores, kind="stable")
    ranking = [{"label": labels[i], "score": float(scores[i])} for i in order]
    print(f"{path}: " + ", ".join(f"{r['label']} {r['score']:.4f}" for r in ranking), flush=True)
    return {"file": str(path), "ranking": ranking, "num_paths": num_paths, "t": t, "ratio": ratio}


def run_exported(config) -> list[dict]:
    """classify with an exported classifier (configs/export.py) as --config.checkpoint: its classes
    (or the listed subset of them) and its settings; a mesh is sampled at the export's
    input_points, a point file must hold exactly that many points."""
    config_checks.check_keys(config, KEYS)
    loaded = exported_classifier.Loaded(config.checkpoint)
    if config.dataset or config.text_features:
        raise errors.ConfigError(
            "dataset" if config.dataset else "text_features",
            "an exported classifier holds its own classes and text features",
            "pass --config.labels=... to rank a subset of them, or nothing",
        )
    labels = evaluation.parse_labels(config)
    unknown = [label for label in labels if label not in loaded.classes]
    if unknown:
        raise errors.ConfigError(
            "labels",
            f"{unknown} are not classes of the exported classifier",
            f"choose from {loaded.classes[:10]}{' ...' if len(loaded.classes) > 10 else ''}",
        )
    labels = labels or loaded.classes
    files = expand_inputs(config.input)
    check_headers(files)
    clouds = []
    for path in files:
        vertices = readers.read_cloud(path, loaded.input_points, np.random.default_rng(config.seed))
        if len(vertices) != loaded.input_points:
            raise readers.PointFileError(
                path,
                f"{len(vertices)} points; the exported classifier takes clouds of exactly "
                f"{loaded.input_points}",
                "export again with --config.input_points, or resample the file",
            )
        clouds.append(np.asarray(vertices, np.float32))
    scores = loaded.scores(np.stack(clouds))  # (files, C)
    columns = [loaded.classes.index(label) for label in labels]
    record = loaded.record
    results = [
        report(path, row[columns], labels, record["num_paths"], record["t"], record["ratio"])
        for path, row in zip(files, scores)
    ]
    for result in results:
        print(json.dumps(result))
    return results
