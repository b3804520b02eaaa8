"""Teacher features for pretraining (spec D5): the `cached` bank and the per-batch targets of both
modes.

`online`: the frozen image tower runs on each step's freshly augmented view (`online_targets`),
exactly as ReCon. `cached`: `build` runs the image tower once on V augmented views per object and
stores them beside the text features of every (class, prefix, suffix); a step then looks targets up
(`cached_targets`). The bank carries a manifest (teacher, dimensions, preprocessing, views, dataset
and version) that `load` checks against what the run expects, so a bank built for another teacher or
dataset is never used silently.

Text features are the same in both modes: the bank f32[C, 20, 3, D] of raw CLIP text features,
indexed by the class and the random prompt (prefix p, suffix s; prompt index p + 20 s) the pipeline
drew.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from ddjax import errors, progress
from ddjax.data import image_augment, pipelines
from ddjax.teachers import clip

MANIFEST, TEXT_FILE, IMAGE_FILE = "manifest.json", "text_features.npy", "image_features.npy"
NUM_PREFIXES = pipelines.NUM_PREFIXES


def class_texts(builder) -> list[str]:
    """The text of each label: the dataset's stored category texts, else its label names."""
    texts = builder.info.metadata.get("class_texts") if builder.info.metadata is not None else None
    return list(texts) if texts else list(builder.info.features["label"].names)


def text_targets(text_bank: jax.Array, label: jax.Array, prompt: jax.Array) -> jax.Array:
    """bank f32[C, 20, 3, D], label int[B], prompt int[B] (p + 20 s) -> f32[B, D]."""
    return text_bank[label, prompt % NUM_PREFIXES, prompt // NUM_PREFIXES]


def online_targets(
    teacher: clip.Teacher, teacher_params, text_bank: jax.Array, batch: dict
) -> dict:
    """Targets from the frozen image tower on batch['image'] (B, S, S, 3) and the text bank.
    Jittable."""
    image = jax.lax.stop_gradient(teacher.encode_image(teacher_params, batch["image"]))
    return {
        "image_features": image,
        "text_features": text_targets(text_bank, batch["label"], batch["prompt"]),
    }


def cached_targets(image_bank: jax.Array, text_bank: jax.Array, batch: dict) -> dict:
    """Targets looked up in the banks: image_bank f32[R, V, D] at (record, view). Jittable."""
    return {
        "image_features": image_bank[batch["record"], batch["view"]],
        "text_features": text_targets(text_bank, batch["label"], batch["prompt"]),
    }


class CacheError(errors.UserError):
    what = "cannot use the teacher cache"


def build(
    teacher: clip.Teacher,
    builder,
    out_dir: str | os.PathLike,
    *,
    splits=("train", "test"),
    views: int = 8,
    image_pipeline: str = "recon",
    batch_size: int = 64,
    seed: int = 0,
) -> dict:
    """Computes and writes the bank for `builder`'s `splits` (in IndexedSource order); returns the
    manifest.

    View v of record r uses `np.random.default_rng([seed, r, v])` for its augmentation, so the
    bank is reproducible. The directory is written atomically (a temporary sibling renamed into
    place).
    """
    if views < 1:
        raise ValueError(f"teacher cache: views must be >= 1, got {views}")
    if image_pipeline not in image_augment.PIPELINES:
        raise ValueError(
            f"teacher cache: image_pipeline must be one of {image_augment.PIPELINES}, "
            f"got {image_pipeline!r}"
        )
    texts = class_texts(builder)
    text_bank = np.asarray(clip.prompt_bank(teacher, texts), np.float32)  # (C, 20, 3, D)
    source = pipelines.IndexedSource([builder.as_data_source(s) for s in splits])
    image_bank = np.zeros((len(source), views, teacher.dim), np.float32)  # (R, V, D)
    jobs = [(r, v) for r in range(len(source)) for v in range(views)]
    bar = progress.bar(total=len(jobs), desc="teacher cache", unit="view")
    for i in range(0, len(jobs), batch_size):
        chunk = jobs[i : i + batch_size]
        images = np.stack(
            [
                image_augment.preprocess(
                    image_augment.decode_png(source[r]["image"]),
                    image_pipeline,
                    np.random.default_rng([seed, r, v]),
                    size=teacher.image_size,
                )
                for r, v in chunk
            ]
        )  # (b, S, S, 3)
        feats = np.asarray(clip.image_features(teacher, images))  # (b, D)
        for (r, v), f in zip(chunk, feats):
            image_bank[r, v] = f
        bar.update(len(chunk))
    bar.close()
    manifest = {
        "teacher": teacher.source,
        "dim": teacher.dim,
        "image_size": teacher.image_size,
        "image_pipeline": image_pipeline,
        "views": views,
        "seed": seed,
        "dataset": builder.info.full_name,
        "dataset_version": str(builder.version),
        "splits": list(splits),
        "num_records": len(source),
        "class_texts": texts,
        "prompts": [NUM_PREFIXES, text_bank.shape[2]],
    }
    out = pathlib.Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    np.save(tmp / TEXT_FILE, text_bank)
    np.save(tmp / IMAGE_FILE, image_bank)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return manifest


def load(cache_dir: str | os.PathLike, **expected) -> tuple[jax.Array, jax.Array, dict]:
    """(text_bank f32[C, 20, 3, D], image_bank f32[R, V, D], manifest); every `expected` manifest
    field is checked (e.g. teacher=..., dataset=..., image_pipeline=...), ValueError naming the
    first mismatch."""
    path = pathlib.Path(cache_dir)
    rebuild = f"rebuild it: python main.py --config=configs/teacher_cache.py --workdir={path}"
    if not (path / MANIFEST).is_file():
        raise CacheError(path / MANIFEST, "no teacher cache here (missing manifest)", rebuild)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        num_records, views, dim, texts = (
            manifest[k] for k in ("num_records", "views", "dim", "class_texts")
        )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise CacheError(
            path / MANIFEST, f"unreadable manifest ({errors.one_line(e)})", rebuild
        ) from None
    for key, want in expected.items():
        have = manifest.get(key)
        if (list(have) if isinstance(have, (list, tuple)) else have) != (
            list(want) if isinstance(want, (list, tuple)) else want
        ):
            raise CacheError(
                path / MANIFEST,
                f"field {key!r} is {have!r}, this run expects {want!r}",
                "build a cache for this run's dataset, splits and teacher",
            )
    banks = []
    for name in (TEXT_FILE, IMAGE_FILE):
        try:
            banks.append(np.load(path / name, mmap_mode="r", allow_pickle=False))
        except (ValueError, OSError, EOFError) as e:  # missing, truncated, pickled
            raise CacheError(path / name, f"unreadable ({errors.one_line(e)})", rebuild) from None
    text_bank, image_bank = banks
    if image_bank.shape != (num_records, views, dim):
        raise CacheError(
            path / IMAGE_FILE,
            f"shape {image_bank.shape}, the manifest says ({num_records}, {views}, {dim})",
            rebuild,
        )
    if text_bank.ndim != 4 or text_bank.shape[0] != len(texts) or text_bank.shape[-1] != dim:
        raise CacheError(
            path / TEXT_FILE, f"shape {text_bank.shape}, inconsistent with the manifest", rebuild
        )
    text_bank, image_bank = np.asarray(text_bank, np.float32), np.asarray(image_bank, np.float32)
    if not (np.isfinite(text_bank).all() and np.isfinite(image_bank).all()):
        raise CacheError(path, "non-finite features in the bank", rebuild)
    return jnp.asarray(text_bank), jnp.asarray(image_bank), manifest
