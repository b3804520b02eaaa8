"""Is a teacher usable? Checks on what it computes, run when a job starts, before anything learns
from it or is scored against it.

A broken teacher gives no error of its own: a CLIP text tower that pools the wrong token gives one
feature for every caption, a constant image tower one feature for every render, and a job that
learns from them or scores with them still prints a number (chance, or worse, something that looks
like a result). So every job checks what its teacher gives, whatever the kind (a trained tiny CLIP,
a real CLIP from the hub or a folder, a cached bank, a converted run's text-features files, a file
passed with --config.text_features):

    check_class_features(features f32[C, D], names, source)   class text features pairwise distinct
    check_image_features(features f32[B, D], source)           image features that vary over a batch
    check_clip(teacher, class_texts, records, pipeline)        both, for a CLIP model
    probe_images(records, pipeline, size)                      the renders check_image_features sees

Distinct means a cosine below MAX_COSINE for every pair: a check for collapse (one feature for
every input), not for quality, which the tiny teacher checks itself on its renders
(`tiny_clip.check_report`). The class features are sums of 60 prompt features that share a large
common part, so even a working teacher's sit close to 1. Measured on the synthetic set's 12 classes
with `tiny_clip.train` (width, steps, tokenizer: the largest cosine, the teacher's own top-1):
128, 400, CLIP's BPE: 0.887, 0.99; 128, 400, character-level: 0.99899, 0.85; on the 48 renders of
synthetic_shapes/tiny, 32, 300, BPE: 1 - 7.1e-5, 0.63; 32, 300, character-level: 1 - 5.5e-4, 0.65;
collapsed ones: 32, 10, BPE: 1 - 5.7e-6, chance; 32, 60, BPE: 1 - 2.4e-7, chance; and the teacher of
the end-of-text bug (the wrong token pooled): 1 - 0, chance. MAX_COSINE = 1 - 1e-5 lies between.
"""

from __future__ import annotations

import numpy as np

from ddjax import errors
from ddjax.data import image_augment
from ddjax.teachers import clip

MAX_COSINE = 1 - 1e-5  # at or above it, two features count as one
PROBE_IMAGES = 16  # renders the image check encodes


class TeacherError(errors.UserError):
    what = "refused the teacher"
    todo = (
        "a teacher that gives (nearly) the same feature for different inputs teaches nothing and "
        "scores at chance: use a trained CLIP (its weights and its own tokenizer), or retrain the "
        "tiny teacher"
    )


def _unit_rows(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def check_class_features(features, names, source: str, todo: str | None = None) -> None:
    """TeacherError naming `source` unless the class text features f32[C, D] are finite, nonzero and
    pairwise distinct (every cosine below MAX_COSINE); names: the C classes, to name the closest
    pair."""
    features = np.asarray(features, np.float64)
    names = list(names)
    if not np.isfinite(features).all():
        bad = [names[i] for i in np.flatnonzero(~np.isfinite(features).all(axis=1))]
        raise TeacherError(
            source, f"the class text features of {_some(bad)} are NaN or infinite", todo
        )
    zero = np.flatnonzero(~np.any(features != 0, axis=1))
    if len(zero):
        raise TeacherError(
            source, f"the class text features of {_some([names[i] for i in zero])} are zero", todo
        )
    if len(features) < 2:
        return
    cosine = _unit_rows(features) @ _unit_rows(features).T
    np.fill_diagonal(cosine, -np.inf)
    i, j = np.unravel_index(np.argmax(cosine), cosine.shape)
    if cosine[i, j] >= MAX_COSINE:
        same = int(np.sum(np.triu(cosine >= MAX_COSINE, 1)))
        raise TeacherError(
            source,
            f"its text features do not tell the classes apart: {names[i]!r} and {names[j]!r} "
            f"have cosine {cosine[i, j]:.7f} ({same} of {len(names) * (len(names) - 1) // 2} "
            f"class pairs at {MAX_COSINE} or more)",
            todo,
        )


def check_image_features(features, source: str, todo: str | None = None) -> None:
    """TeacherError naming `source` unless the image features f32[B, D] of different renders are
    finite and vary: some pair with a cosine below MAX_COSINE."""
    features = np.asarray(features, np.float64)
    if not np.isfinite(features).all():
        raise TeacherError(source, "its image features are NaN or infinite", todo)
    if len(features) < 2:
        return
    cosine = _unit_rows(features) @ _unit_rows(features).T
    if cosine.min() >= MAX_COSINE:
        raise TeacherError(
            source,
            f"its image features are the same for {len(features)} different renders (every "
            f"cosine at least {cosine.min():.7f})",
            todo,
        )


def check_clip(
    teacher: clip.Teacher,
    class_texts,
    records,
    pipeline: str,
    *,
    class_sums=None,
    source: str | None = None,
    todo: str | None = None,
) -> None:
    """Both checks for a CLIP teacher: its class prompt sums (`class_sums` f32[C, D] where already
    computed, else clip.class_text_features) and its image tower on `probe_images(records)`."""
    source = source or teacher.source
    if class_sums is None:
        class_sums = clip.class_text_features(teacher, list(class_texts))  # (C, D)
    check_class_features(class_sums, class_texts, source, todo)
    probe = probe_images(records, pipeline, teacher.image_size)  # (n, S, S, 3)
    check_image_features(clip.image_features(teacher, probe), source, todo)


def spread(count: int, total: int) -> np.ndarray:
    """Up to `count` indices spread evenly over range(total) (so several classes of a dataset)."""
    return np.unique(np.linspace(0, total - 1, min(count, total)).astype(int))


def probe_images(records, pipeline: str, size: int, count: int = PROBE_IMAGES) -> np.ndarray:
    """f32[n, size, size, 3]: the renders of up to `count` records spread over `records` (a record
    source with an 'image' field), preprocessed by `pipeline` with a fixed seed."""
    rng = np.random.default_rng(0)
    return np.stack(
        [
            image_augment.preprocess(
                image_augment.decode_png(records[int(i)]["image"]), pipeline, rng, size=size
            )
            for i in spread(count, len(records))
        ]
    )  # (n, S, S, 3)


def _some(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:3])
    return shown + (f" and {len(names) - 3} more" if len(names) > 3 else "")
