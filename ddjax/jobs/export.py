"""The export job (configs/export.py): a run's zero-shot classifier as one folder that plain jax
loads and calls (ddjax/exported_classifier.py). Every value is checked, and the labels' text
features made, before the model is lowered; the files are written atomically, export.json last.
"""

from __future__ import annotations

import json
import pathlib

import jax
import ml_collections

from ddjax import (
    checkpoints,
    config_checks,
    errors,
    evaluation,
    exported_classifier,
    portability,
    run_folder,
)
from ddjax.models import registry
from ddjax.teachers import sanity

KEYS = {
    "": {
        "job",
        "checkpoint",
        "labels",
        "dataset",
        "data_dir",
        "text_features",
        "input_points",
        "npoints",
        "point_all",
        "num_paths",
        "t",
        "ratio",
        "template",
        "seed",
        "platforms",
    }
}
SETTINGS = ("npoints", "point_all", "num_paths", "t", "ratio", "seed")


def check_config(config, workdir: str | None) -> tuple[list[str], dict, tuple[str, ...]]:
    """(labels, the run's recorded config, platforms), every value checked."""
    config_checks.check_keys(config, KEYS)
    config_checks.require_workdir(workdir, "export", "the exported classifier")
    platforms = tuple(config_checks.parse_list(config, "platforms", str))
    unknown = [p for p in platforms if p not in portability.PLATFORMS]
    if unknown or not platforms:
        raise errors.ConfigError(
            "platforms",
            f"{unknown or 'none'}: choose from {list(portability.PLATFORMS)}",
            "e.g. --config.platforms=cpu,cuda,tpu",
        )
    config_checks.refuse_repeats("platforms", list(platforms))
    labels, run_config = evaluation.check_labels(config)
    config_checks.check_int(config, "npoints", 1)
    config_checks.check_int(config, "point_all", config.npoints)
    config_checks.check_int(config, "input_points", config.point_all)
    evaluation.check_noise_setting(config, run_config)
    config_checks.check_number(config, "ratio", 0.0)
    config_checks.check_seed(config)
    model = run_config["model"]
    if model.get("own_tokenization", False):
        raise errors.ConfigError(
            "checkpoint",
            f"a converted {model.get('kind')} model reads its clouds as stored, which the "
            "exported program does not do",
            "export a ddjax run",
        )
    if config.npoints < max(model["num_groups"], model["group_size"]):
        raise errors.ConfigError(
            "npoints", f"{config.npoints} points are fewer than the model's tokenizer needs"
        )
    out = pathlib.Path(workdir).expanduser()
    if (out / "config.json").is_file():
        raise errors.ConfigError(
            "--workdir", f"{out} is a run folder", "export into a folder of its own"
        )
    return labels, run_config, platforms


def record_of(config, labels: list[str], step: int) -> dict:
    return {
        "checkpoint": str(pathlib.Path(config.checkpoint).expanduser().resolve()),
        "step": step,
        "classes": list(labels),
        "input_points": config.input_points,
        **{k: config[k] for k in SETTINGS},
        "template": config.template,
    }


def refuse_another_export(out: pathlib.Path, record: dict) -> None:
    """Refuses to replace an export of another run, step, label set or settings."""
    path = out / exported_classifier.RECORD
    try:
        old = json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        old = None
    if old is None:
        return
    changed = sorted(k for k in record if old.get(k) != record[k])
    if changed:
        raise run_folder.RunFolderError(
            out,
            f"holds an export with other {', '.join(changed)}; nothing was changed",
            "export into another --workdir",
        )


def run(config, workdir: str | None = None) -> dict:
    labels, recorded, platforms = check_config(config, workdir)
    run_dir = pathlib.Path(config.checkpoint).expanduser().resolve()
    run_config, variables, step = checkpoints.restore_run(run_dir)
    model_config = ml_collections.ConfigDict(run_config["model"])
    text, source = evaluation.labels_text_features(config, recorded, run_dir, labels)
    sanity.check_class_features(text, labels, source)
    out = pathlib.Path(workdir).expanduser().resolve()
    record = record_of(config, labels, step)
    refuse_another_export(out, record)
    num_paths, t = registry.inference(model_config).setting(config.num_paths, config.t)
    exported = exported_classifier.export_classifier(
        variables,
        text,
        model_config=model_config,
        input_points=config.input_points,
        platforms=platforms,
        npoints=config.npoints,
        point_all=config.point_all,
        num_paths=num_paths,
        t=t,
        ratio=config.ratio,
        seed=config.seed,
    )
    record.update(platforms=list(platforms), jax=jax.__version__, text_features_source=source)
    exported_classifier.write(out, exported, variables, text, labels, record)
    shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
    print(
        f"export: {len(labels)} classes ({shown}) of {run_dir} (step {step}) for "
        f"{', '.join(platforms)}, clouds of {config.input_points} points, in {out}",
        flush=True,
    )
    return record
