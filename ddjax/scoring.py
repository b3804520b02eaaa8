"""Zero-shot scoring (paper Eq. 1 and 4; spec sections 2.8, 4.3-4.4, 6.2), shared by every
evaluation job.

Per test cloud: the mean over `num_paths` noise paths of the raw (image, text) feature predictions,
the ensemble ratio * text + image, and the cosine with each class's text feature (the plain sum of
its prompt embeddings); the prediction is the argmax. `score_batches` runs a model over a test split
dealt out over every device of every process; `sweep` does so for every (num_paths, t) of the
paper's Table 5 at once.

No accuracy is reported from numbers that are not numbers: `point_logits` gives every cloud a
status beside its logits (finite, the model's features not finite, or the ratio-weighted feature
not finite or without a norm), and `require_finite` refuses a result with any cloud not finite,
naming the cause (the checkpoint, or the ratio) in one line.
"""

from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from ddjax import distributed, errors
from ddjax.data import pipelines
from ddjax.models.interface import Inference
from ddjax.teachers import clip


def class_text_features(teacher: clip.Teacher, classnames, template: str = "recon") -> np.ndarray:
    """f32[C, D]: per class, the sum of the raw text features of its prompts (60 for
    ReCon's set)."""
    return np.asarray(clip.class_text_features(teacher, list(classnames), template=template))


def ensemble(features: jax.Array, ratio: float, feature_types=("image", "text")) -> jax.Array:
    """features f32[B, k, D] (raw, path-averaged) -> ratio * text + image, f32[B, D] (spec 2.8); a
    model with one feature type (ULIP's point embedding) -> that feature."""
    if len(feature_types) == 1:
        return features[:, 0]
    image = features[:, feature_types.index("image")]
    text = features[:, feature_types.index("text")]
    return ratio * text + image


def _defined_norm(x: jax.Array) -> jax.Array:
    """|x| over the last axis, NaN where it is 0 or overflows float32 (no direction to compare)."""
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return jnp.where(jnp.isfinite(norm) & (norm > 0), norm, jnp.nan)


def cosine_logits(
    point_features: jax.Array, text_features: jax.Array, scale: float = 1.0
) -> jax.Array:
    """scale * cosine similarity: (B, D) x (C, D) -> (B, C); NaN in the rows (columns) whose
    feature has no direction (a zero norm, or one beyond float32), never a silent 0."""
    p = point_features / _defined_norm(point_features)
    t = text_features / _defined_norm(text_features)
    return scale * jnp.einsum("bd,cd->bc", p, t)


FINITE, BAD_FEATURES, BAD_ENSEMBLE = 0, 1, 2  # a cloud's status (`point_logits`)


def point_logits(
    features: jax.Array, ratio: float, text_features: jax.Array, feature_types, scale: float = 1.0
) -> tuple[jax.Array, jax.Array]:
    """(logits f32[B, C] = scale * cosine(ensemble(features), text_features), status i32[B]) of the
    path-averaged features f32[B, k, D]: FINITE, BAD_FEATURES (the model's features are NaN or
    infinite) or BAD_ENSEMBLE (ratio * text + image, or its norm, is not finite or is 0).
    `require_finite` reads the statuses."""
    combined = ensemble(features, ratio, feature_types)  # (B, D)
    logits = cosine_logits(combined, text_features, scale)  # (B, C)
    status = jnp.where(
        ~jnp.isfinite(features).all(axis=(1, 2)),
        BAD_FEATURES,
        jnp.where(jnp.isfinite(logits).all(axis=1), FINITE, BAD_ENSEMBLE),
    )
    return logits, status.astype(jnp.int32)


class NonFiniteError(errors.UserError):
    what = "refused to report a result computed from non-finite numbers"


def require_finite(status, *, ratio: float, ratio_key: str = "ratio", clouds: str = "clouds"):
    """NonFiniteError naming the cause unless every status (`point_logits`) is FINITE: the model
    (config.checkpoint) where its features are not finite, else the ratio (config.`ratio_key`)."""
    status = np.asarray(status)
    require_finite_counts(
        int(np.sum(status == BAD_FEATURES)),
        int(np.sum(status == BAD_ENSEMBLE)),
        status.size,
        ratio=ratio,
        ratio_key=ratio_key,
        clouds=clouds,
    )


def require_finite_counts(
    bad_model: int, bad_ratio: int, total: int, *, ratio: float, ratio_key: str, clouds: str
) -> None:
    """`require_finite` from the counts of BAD_FEATURES and BAD_ENSEMBLE among `total`."""
    if bad_model:
        raise NonFiniteError(
            "config.checkpoint",
            f"the model's features of {bad_model} of {total} {clouds} are NaN or infinite",
            "its weights hold NaN or inf (a run that diverged), or the input clouds do: evaluate "
            "another checkpoint, or check the input",
        )
    if bad_ratio:
        raise NonFiniteError(
            f"config.{ratio_key}",
            f"ratio x text + image at ratio={ratio:g} has no finite direction for {bad_ratio} of "
            f"{total} {clouds} (the model's features are finite; the weighted sum or its norm "
            "overflows float32, or is 0)",
            "use a ratio of ordinary size: the paper's are 0.05 to 0.25, 0 for the image feature "
            "alone",
        )


# the accuracies of a report (fractions), as a sweep's rows and TensorBoard's scalars carry them
ACCURACIES = ("top1", "top5", "mean_class_acc")


def accuracy_report(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """top1, top5, mean_class_acc (fractions) and per_class accuracy (None for classes absent from
    labels)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    pred = logits.argmax(axis=1)
    k = min(5, logits.shape[1])
    top5 = (np.argsort(-logits, axis=1, kind="stable")[:, :k] == labels[:, None]).any(axis=1)
    per_class = [
        float((pred[labels == c] == c).mean()) if (labels == c).any() else None
        for c in range(num_classes)
    ]
    present = [a for a in per_class if a is not None]
    return {
        "top1": float((pred == labels).mean()),
        "top5": float(top5.mean()),
        "mean_class_acc": float(np.mean(present)),
        "per_class": per_class,
        "num_samples": int(len(labels)),
    }


def diagnose(
    inference: Inference, variables, batches, text_features, *, ratio, t, num_paths, ratio_key
) -> None:
    """`require_finite`'s error for the first batch (dicts of 'points', 'valid') whose clouds'
    logits are not finite: what a job that met non-finite logits elsewhere (inside an attack) calls
    to name their cause. Returns when every batch is finite."""
    status_fn = jax.jit(
        lambda v, points, key: point_logits(
            inference.infer(v, points, key, t=t, num_paths=num_paths),
            ratio,
            jnp.asarray(text_features),
            inference.feature_types,
        )[1]
    )
    for i, batch in enumerate(batches):
        status = np.asarray(status_fn(variables, batch["points"], jax.random.key(i)))
        require_finite(status[batch["valid"]], ratio=ratio, ratio_key=ratio_key)


def load_batches(
    test_source, *, npoints: int, point_all: int, batch_size: int, seed: int, normalize: bool = True
) -> list[dict | None]:
    """The test split as fixed-size batches (`pipelines.padded_batches`), those this process
    computes (`distributed.assignment`) loaded, the others None."""
    count = pipelines.num_batches(test_source, batch_size)
    # none: batch 0 gives `distributed.run_items` the shapes
    mine = {i for i, _ in distributed.assignment(count)} or {0}
    return pipelines.padded_batches(
        test_source,
        npoints=npoints,
        point_all=point_all,
        batch_size=batch_size,
        seed=seed,
        normalize=normalize,
        wanted=mine,
    )


def _on_device(variables, text_features):
    """compute(i, device) helpers: the variables and text features placed once per device."""
    placed = {}

    def get(device):
        if device not in placed:
            placed[device] = jax.device_put((variables, jnp.asarray(text_features)), device)
        return placed[device]

    return get


def _valid_rows(outs: list[dict], name: str) -> np.ndarray:
    return np.concatenate([o[name][o["valid"]] for o in outs])


def score_batches(
    infer,
    variables,
    batches: list[dict | None],
    text_features,
    *,
    ratios: Iterable[float],
    t: int,
    num_paths: int,
    key: jax.Array,
    feature_types=("image", "text"),
    on_batch=None,
    ratio_keys: tuple[str, ...] = (),
) -> tuple[dict, np.ndarray]:
    """Runs `infer` (jitted, static t/num_paths) on every batch of `load_batches`, batch i with
    fold_in(key, i) on its own device (`distributed.run_items`: any number of processes and devices
    give the same numbers), and scores the same features with each text ratio: ({ratio: logits
    f32[M, C]}, labels int[M]), in every process. `on_batch()` follows each of this process's
    batches. A cloud whose logits are not finite is refused (`require_finite`, naming the config key
    of ratio j, ratio_keys[j], default "ratio")."""
    ratios = list(ratios)
    placed = _on_device(variables, text_features)

    def compute(i, device):
        v, text = placed(device)
        feats = infer(
            v,
            jax.device_put(batches[i]["points"], device),
            jax.random.fold_in(key, i),
            t=t,
            num_paths=num_paths,
        )
        scored = [point_logits(feats, r, text, feature_types) for r in ratios]
        return {
            **{f"logits{j}": logits for j, (logits, _) in enumerate(scored)},
            **{f"status{j}": status for j, (_, status) in enumerate(scored)},
            "label": batches[i]["label"],
            "valid": batches[i]["valid"],
        }

    outs = distributed.run_items(len(batches), compute, on_item=on_batch)
    for j, r in enumerate(ratios):
        key_j = ratio_keys[j] if j < len(ratio_keys) else "ratio"
        require_finite(_valid_rows(outs, f"status{j}"), ratio=r, ratio_key=key_j)
    return (
        {r: _valid_rows(outs, f"logits{j}") for j, r in enumerate(ratios)},
        _valid_rows(outs, "label"),
    )


def evaluate(
    infer,
    variables,
    batches: list[dict | None],
    text_features,
    *,
    ratio: float,
    t: int,
    num_paths: int,
    key: jax.Array,
    feature_types=("image", "text"),
    ratio_key: str = "ratio",
) -> dict:
    """The accuracy report of `score_batches` at one ratio."""
    logits, labels = score_batches(
        infer,
        variables,
        batches,
        text_features,
        ratios=[ratio],
        t=t,
        num_paths=num_paths,
        key=key,
        feature_types=feature_types,
        ratio_keys=(ratio_key,),
    )
    report = accuracy_report(logits[ratio], labels, np.shape(text_features)[0])
    report.update({"num_paths": num_paths, "t": t, "ratio": ratio})
    return report


SWEEP_N = (1, 2, 4, 8, 16)


SWEEP_T = tuple(range(0, 1000, 100))


def sweep(
    inference: Inference,
    variables,
    batches: list[dict | None],
    text_features,
    *,
    ratio: float,
    key: jax.Array,
    on_batch=None,
    ratio_key: str = "ratio",
) -> list[dict]:
    """Table 5: the accuracy of every (num_paths, t) of SWEEP_N x SWEEP_T in one pass over the test
    split (`load_batches`, dealt out as in `score_batches`): rows {num_paths, t, top1, top5,
    mean_class_acc}. Per batch and t the 16 paths are computed once (at t = 0 with one shared
    encoder pass) and num_paths = n uses the first n of them."""
    paths = jax.jit(inference.infer_paths, static_argnames=("t", "num_paths"))
    placed = _on_device(variables, text_features)

    def compute(i, device):
        v, text_on_device = placed(device)
        points, logits = jax.device_put(batches[i]["points"], device), {}
        for t in SWEEP_T:
            # (16, B, k, D)
            outs = paths(v, points, jax.random.fold_in(key, i), t=t, num_paths=max(SWEEP_N))
            for n in SWEEP_N:
                feats = jnp.mean(outs[:n], axis=0)  # (B, k, D)
                logits[f"N{n}_t{t}"], logits[f"status_N{n}_t{t}"] = point_logits(
                    feats, ratio, text_on_device, inference.feature_types
                )
        return logits | {"label": batches[i]["label"], "valid": batches[i]["valid"]}

    outs = distributed.run_items(len(batches), compute, on_item=on_batch)
    require_finite(
        np.stack([_valid_rows(outs, f"status_N{n}_t{t}") for n in SWEEP_N for t in SWEEP_T]),
        ratio=ratio,
        ratio_key=ratio_key,
        clouds="(clouds x settings)",
    )
    labels = _valid_rows(outs, "label")
    rows = []
    for n in SWEEP_N:
        for t in SWEEP_T:
            report = accuracy_report(
                _valid_rows(outs, f"N{n}_t{t}"), labels, np.shape(text_features)[0]
            )
            rows.append(
                {
                    "num_paths": n,
                    "t": t,
                    **{k: report[k] for k in ACCURACIES},
                }
            )
    return rows
