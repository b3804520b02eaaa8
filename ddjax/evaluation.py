"""What every evaluation job (zeroshot, attack, certify, classify) shares: the checks of its run,
data and scoring fields (configs/zeroshot.py's `evaluation_fields`), the run's model (`inference`:
any kind, never branched on), the class text features (from the run's CLIP teacher, cached in the
job's folder, or from a file), and `load_evaluation`, which restores the run and opens the test
data.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
from typing import Any, NamedTuple

import ml_collections
import numpy as np

from ddjax import checkpoints, config_checks, distributed, errors, memory, run_folder, scoring
from ddjax.data import classnames, prepare
from ddjax.models import registry
from ddjax.models.interface import Inference
from ddjax.teachers import cache, clip, prompts, sanity

SCAN_SPELLINGS = ("toile", "toilet")


# The run, test-data and scoring keys every evaluation job reads (configs/zeroshot.py's
# `evaluation_fields`).
EVALUATION_KEYS = frozenset(
    {
        "name",
        "checkpoint",
        "dataset",
        "data_dir",
        "npoints",
        "point_all",
        "num_groups",
        "group_size",
        "normalize",
        "ratio",
        "template",
        "text_features",
        "scan_spelling",
    }
)


def check_evaluation(config) -> dict:
    """Checks the run, test-data and scoring fields every evaluation job shares
    (configs/zeroshot.py's `evaluation_fields`) without loading anything heavy; returns the run's
    recorded config (config.json)."""
    run_config = checkpoints.read_run_config(config_checks.check_run_dir(config, "checkpoint"))
    prepare.check_dataset(config)
    config_checks.check_int(config, "npoints", 1)
    if config.point_all:  # 0: the clouds as stored (see input_points)
        config_checks.check_int(config, "point_all", config.npoints)
    config_checks.check_int(config, "num_groups", 0)
    config_checks.check_int(config, "group_size", 0 if not config.num_groups else 1)
    config_checks.check_number(config, "ratio", 0.0)
    config_checks.check_choice(config, "template", prompts.TEMPLATES)
    config_checks.check_choice(config, "scan_spelling", SCAN_SPELLINGS)
    config_checks.check_choice(config, "normalize", (True, False))
    model = run_config["model"]
    input_points(config, model)
    check_text_source(config, run_config)
    own = not config.num_groups or model.get("own_tokenization", False)
    groups = model["num_groups"] if own else config.num_groups
    size = model["group_size"] if own else config.group_size
    if config.npoints < max(groups, size):
        raise errors.ConfigError(
            "npoints, config.num_groups, config.group_size",
            f"{config.npoints} points are fewer than the tokenizer needs ({groups} groups of "
            f"{size})",
            "raise npoints or lower num_groups and group_size",
        )
    return run_config


def inference(run_config: dict) -> Inference:
    """The run's model's inference functions (any kind: models/registry.py)."""
    return registry.inference(ml_collections.ConfigDict(run_config["model"]))


def read_text_features(path, dim: int | None = None) -> tuple[np.ndarray, list[str]]:
    """--config.text_features=FILE.npy: f32[C, D] class text features, and the C class names from
    FILE.txt beside it (one per line). ConfigError unless both read, the counts agree and D equals
    `dim`."""
    path = pathlib.Path(str(path)).expanduser()
    names_file = path.with_suffix(".txt")
    if path.suffix != ".npy" or not path.is_file():
        raise errors.ConfigError(
            "text_features",
            f"{path} is not an existing .npy file",
            "pass FILE.npy (f32[C, D]) with the class names in FILE.txt beside it",
        )
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise errors.ConfigError(
            "text_features", f"{path} is not a readable .npy array ({errors.one_line(e)})"
        ) from None
    if (
        features.ndim != 2
        or not np.issubdtype(features.dtype, np.floating)
        or not np.isfinite(features).all()
    ):
        raise errors.ConfigError(
            "text_features",
            f"{path} holds a {features.dtype}{list(features.shape)} array",
            "it must be finite floats of shape [classes, width]",
        )
    try:
        names = [
            line.strip()
            for line in names_file.read_text(encoding="utf-8").splitlines()
            if line.strip()
        ]
    except (OSError, UnicodeDecodeError) as e:
        raise errors.ConfigError(
            "text_features",
            f"the class names file {names_file} is unreadable ({errors.one_line(e)})",
            "write one class name per line beside the .npy",
        ) from None
    if len(names) != features.shape[0]:
        raise errors.ConfigError(
            "text_features",
            f"{names_file} names {len(names)} classes but {path.name} holds "
            f"{features.shape[0]} rows",
            "one name per row, in the same order",
        )
    if dim is not None and features.shape[1] != dim:
        raise errors.ConfigError(
            "text_features",
            f"{path.name} has width {features.shape[1]} but the model's "
            f"point features have width {dim}",
            "use the text encoder the model was trained with",
        )
    return features.astype(np.float32), names


RUN_TEXT_FEATURES = "text_features"  # a converted run's folder of FILE.npy + FILE.txt pairs


def run_text_features(run_dir) -> list[pathlib.Path]:
    """The class text-features files a converted run folder holds (`convert
    --config.text_features`), sorted by name."""
    folder = pathlib.Path(str(run_dir)).expanduser() / RUN_TEXT_FEATURES
    return sorted(folder.glob("*.npy")) if folder.is_dir() else []


def check_text_source(config, run_config: dict) -> list[str] | None:
    """The class names of --config.text_features (the file checked against the model's width), or
    None when the run's teacher or its own text-features files give them; ConfigError when none
    can."""
    model = run_config["model"]
    if config.get("text_features"):
        return read_text_features(config.text_features, model.get("teacher_dim"))[1]
    if not run_config.get("resolved", {}).get("teacher", "x") and not run_text_features(
        config.checkpoint
    ):
        raise errors.ConfigError(
            "text_features",
            f"the run {config.checkpoint} has no text tower ddjax can load "
            f"(a converted {model.get('kind')} model) and holds no class text features",
            "pass --config.text_features=FILE.npy with the class text features made by the "
            "peer's own text encoder, or convert with it (docs/baselines.md)",
        )
    return None


def pick_run_text_features(run_dir, names: list[str], dim: int) -> tuple[np.ndarray, str]:
    """(f32[C, D], its file) of the converted run's text-features file whose class names are
    `names` (the evaluation dataset's, in order); ConfigError listing the files otherwise."""
    files = run_text_features(run_dir)
    for path in files:
        features, given = read_text_features(path, dim)
        if [g.lower() for g in given] == [n.lower() for n in names]:
            return features, str(path.resolve())
    raise errors.ConfigError(
        "text_features",
        f"none of the run's class text-features files ({', '.join(p.name for p in files)}) names "
        f"the {len(names)} classes of this dataset in its order ({', '.join(names[:3])}, ...)",
        "pass --config.text_features=FILE.npy made for this dataset's classes",
    )


def run_text_features_with(run_dir, labels: list[str]) -> str:
    """The first of a converted run's text-features files whose class names include every label
    (all labels: the first file); ConfigError when none does."""
    files = run_text_features(run_dir)
    for path in files:
        names_file = path.with_suffix(".txt")
        try:
            names = names_file.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError):
            continue  # read_text_features names the problem when the file is used
        if set(labels) <= {n.strip() for n in names}:
            return str(path)
    raise errors.ConfigError(
        "text_features",
        f"the run {run_dir} has no text tower ddjax can load, and none of its class text-features "
        f"files ({', '.join(p.name for p in files) or 'none'}) names {labels}",
        "pass --config.text_features=FILE.npy with the labels' text features",
    )


def input_points(config, model_config) -> None:
    """A peer with its own input (`own_tokenization`: ULIP 8192, ULIP-2 and Uni3D 10,000 points per
    cloud) reads `npoints` = its own, taken as stored (`point_all` 0: the whole cloud in file order,
    or FPS to npoints from its first point where the cloud has more, as their loaders do); every
    other model reads the config's npoints and point_all. Sets them in `config`."""
    if model_config.get("own_tokenization", False) and "npoints" in model_config:
        config.npoints, config.point_all = int(model_config["npoints"]), 0


def check_noise_setting(
    config, run_config: dict, n_key: str = "num_paths", t_key: str = "t"
) -> None:
    if inference(run_config).deterministic:
        return  # run at one path, t = 0 whatever the config says
    config_checks.check_int(config, n_key, 1)
    config_checks.check_int(config, t_key, 0, run_config["model"]["num_timesteps"] - 1)


def check_memory(
    run_config: dict, batch: int, num_paths: int, t: int, key: str = "num_paths"
) -> None:
    """Refuses, before compiling, a (num_paths, t) and `batch` clouds (the whole batch, dealt out
    over every device) whose inference holds more than one device's memory
    (`memory.check_inference`); a deterministic model runs one path at t = 0."""
    if inference(run_config).deterministic:
        num_paths, t = 1, 0
    memory.check_inference(
        run_config["model"], batch=batch, num_paths=num_paths, t=t, keys=(key, "batch_size")
    )


def open_eval_dataset(dataset: str, data_dir: str):
    """The prepared evaluation dataset; the built-in synthetic set is prepared on first use."""
    if dataset.startswith("synthetic"):  # process 0 prepares it, the others then open it
        return distributed.main_first(
            "prepare",
            lambda: prepare.prepare(dataset, data_dir),
            then=lambda: prepare.open_dataset(dataset, data_dir),
        )
    return prepare.open_dataset(dataset, data_dir)


def classnames_for(dataset: str, builder, scan_spelling: str) -> list[str]:
    """Prompt class names: ScanObjectNN's fixed list (with the chosen spelling), else the dataset's
    texts."""
    if dataset.startswith("scanobjectnn"):
        return list(classnames.scanobjectnn_classes(scan_spelling))
    return cache.class_texts(builder)


class Evaluation(NamedTuple):
    """What an evaluation job (zero-shot, attack, certify) needs from a run and a dataset
    (`load_evaluation`)."""

    # the run's model config, with the job's tokenization (num_groups, group_size)
    model_config: Any
    inference: Inference  # the model's, with that tokenization
    variables: dict
    step: int
    builder: Any  # the prepared tfds builder of the evaluation dataset
    class_names: list
    text_features: np.ndarray  # f32[C, D], raw sums of the prompt embeddings
    teacher: str  # the teacher's source (hub name or directory), or the text-features file


def load_evaluation(config, out) -> Evaluation:
    """Restores config.checkpoint, opens config.dataset and computes (or reads from `out`, where it
    is cached once per teacher, template and class list) the class text features, which must tell
    the classes apart (`sanity.check_class_features`, whatever their source)."""
    run_config, variables, step = checkpoints.restore_run(config.checkpoint)
    model_config = ml_collections.ConfigDict(run_config["model"])
    if config.num_groups and not model_config.get("own_tokenization", False):
        model_config.num_groups, model_config.group_size = config.num_groups, config.group_size
    model = registry.inference(model_config)
    builder = open_eval_dataset(config.dataset, config.data_dir)
    names = classnames_for(config.dataset, builder, config.scan_spelling)
    text_features, source = class_text_features(config, run_config, names, out)
    sanity.check_class_features(text_features, names, source)
    return Evaluation(model_config, model, variables, step, builder, names, text_features, source)


def class_text_features(config, run_config: dict, names: list[str], out) -> tuple[np.ndarray, str]:
    """(f32[C, D] class text features of `names`, their source): --config.text_features, else a
    converted run's own file for these classes, else the run's teacher (computed once per
    teacher, prompts and classes, cached in `out`)."""
    dim = run_config["model"]["teacher_dim"]
    if config.get("text_features"):
        text_features, given = read_text_features(config.text_features, dim)
        if len(given) != len(names):
            raise errors.ConfigError(
                "text_features",
                f"{len(given)} classes in the file, {len(names)} in {config.dataset}",
                "make the features for this dataset's classes",
            )
        path = pathlib.Path(config.text_features).expanduser().resolve()
        return text_features, f"text features {path}"
    if not run_config["resolved"]["teacher"]:  # a converted peer: its own text-features files
        text_features, path = pick_run_text_features(config.checkpoint, names, dim)
        return text_features, f"text features {path}"
    teacher = clip.load(run_config["resolved"]["teacher"])
    if teacher.dim != dim:
        raise errors.CheckpointError(
            config.checkpoint,
            f"its teacher {teacher.source} embeds text in "
            f"{teacher.dim} dimensions, the model's features have {dim}",
            "convert it with the right --config.teacher, or pass --config.text_features",
        )
    digest = hashlib.sha1(
        json.dumps([teacher.source, config.template, names]).encode()
    ).hexdigest()[:12]
    # computed once per (teacher, prompts, classes)
    cache_file = out / f"text_features_{digest}.npy"
    text_features = None
    if cache_file.is_file():
        try:
            text_features = np.load(cache_file, allow_pickle=False)
        # damaged (an older, non-atomic write): computed again
        except (ValueError, OSError, EOFError):
            text_features = None
    if text_features is None or text_features.shape != (len(names), teacher.dim):
        text_features = scoring.class_text_features(teacher, names, config.template)
        run_folder.save_npy(cache_file, text_features)
    return text_features, teacher.source


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
    return classnames_for(config.dataset, builder, "toilet")  # spelt right


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


def parse_labels(config) -> list[str]:
    """config.labels: its comma-separated names, stripped, empty ones left out."""
    return [label.strip() for label in str(config.labels).split(",") if label.strip()]


def check_labels(config) -> tuple[list[str], dict]:
    """(the candidate labels, the run's recorded config) of a job that scores labels (classify,
    export): --config.labels, or a prepared dataset's classes (--config.dataset), or the names of
    --config.text_features (all, or the listed subset) or of a converted run's own file; every
    value checked, ConfigError otherwise."""
    labels = parse_labels(config)
    if config.dataset:
        labels = dataset_labels(config, labels)
    run_config = checkpoints.read_run_config(config_checks.check_run_dir(config, "checkpoint"))
    if not config.text_features and not run_config.get("resolved", {}).get("teacher", "x"):
        # a converted peer: its own text-features file that names the labels
        config.text_features = run_text_features_with(config.checkpoint, labels)
    names = check_text_source(config, run_config)
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
    config_checks.check_choice(config, "template", prompts.TEMPLATES)
    return labels, run_config


def labels_text_features(config, recorded: dict, run_dir, labels: list[str]):
    """(f32[L, D] text features of `labels`, their source): the rows of --config.text_features, or
    the run's teacher's (cached in the run folder, `label_features`)."""
    dim = recorded["model"]["teacher_dim"]
    if config.get("text_features"):
        table, names = read_text_features(config.text_features, dim)
        text = table[[names.index(label) for label in labels]]  # (L, D)
        return text, f"config.text_features={config.text_features}"
    stored = recorded["resolved"]["teacher"]
    text = label_features(pathlib.Path(run_dir), stored, labels, config.template, dim)
    return text, f"the run's teacher {run_folder.resolve_path(run_dir, stored)}"
