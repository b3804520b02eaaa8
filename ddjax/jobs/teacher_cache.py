"""The teacher_cache job (configs/teacher_cache.py): the frozen CLIP teacher's features of a
dataset, several augmented views per object and every class prompt, built once into --workdir
(ddjax/teachers/cache.py); the pretraining job's `cached` teacher mode reads them
(--config.teacher_cache=DIR).
"""

from __future__ import annotations

from ddjax import config_checks, errors
from ddjax.data import image_augment, pipelines, prepare
from ddjax.teachers import cache, clip, sanity

KEYS = {
    "": {
        "job",
        "dataset",
        "data_dir",
        "splits",
        "teacher",
        "image_pipeline",
        "views",
        "batch_size",
        "seed",
    }
}


def check_config(config, workdir: str | None) -> None:
    """The teacher_cache job's values, checked before the dataset or the teacher is loaded."""
    config_checks.check_keys(config, KEYS)
    config_checks.require_workdir(workdir, "teacher_cache", "the bank")
    config_checks.check_choice(config, "dataset", sorted(prepare.DATASETS))
    if not config.splits or any(s not in ("train", "test") for s in config.splits):
        raise errors.ConfigError(
            "splits", f"must name 'train' and/or 'test', got {tuple(config.splits)}"
        )
    if not config.teacher:
        raise errors.ConfigError("teacher", "empty", "pass a CLIP hub name or a local directory")
    config_checks.check_choice(config, "image_pipeline", image_augment.PIPELINES)
    config_checks.check_int(config, "views", 1)
    config_checks.check_int(config, "batch_size", 1)
    config_checks.check_seed(config)


def run(config, workdir: str | None) -> dict:
    """The teacher_cache job: load the teacher and the prepared dataset, build the bank into
    `workdir`."""
    check_config(config, workdir)
    builder = prepare.open_dataset(config.dataset, config.data_dir)
    teacher = clip.load(config.teacher)
    records = pipelines.IndexedSource([builder.as_data_source(s) for s in config.splits])
    sanity.check_clip(teacher, cache.class_texts(builder), records, config.image_pipeline)
    print(
        f"teacher cache: {config.dataset} ({', '.join(config.splits)}) x {config.views} views with "
        f"{teacher.source} -> {workdir}"
    )
    manifest = cache.build(
        teacher,
        builder,
        workdir,
        splits=tuple(config.splits),
        views=config.views,
        image_pipeline=config.image_pipeline,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    print(
        f"teacher cache: wrote {manifest['num_records']} records x {manifest['views']} views, "
        f"{len(manifest['class_texts'])} classes x 60 prompts, dim {manifest['dim']}"
    )
    return manifest
