"""Zero-shot classification with parallel noise inference (paper Eq. 1 and 4; spec sections 4.3-4.4, 6.2).

Per test cloud: the mean over N noise paths of the raw (image, text) feature predictions, the ensemble
ratio * text + image, and the cosine with each class's text feature (the plain sum of its prompt
embeddings); the prediction is the argmax.
"""
from __future__ import annotations

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np

from ddjax.teachers import clip, prompts


def class_text_features(teacher: clip.Teacher, classnames, template: str = "recon") -> np.ndarray:
    """f32[C, D]: per class, the sum of the raw text features of its prompts (60 for ReCon's set)."""
    return np.asarray(clip.class_text_features(teacher, list(classnames), template=template))


def ensemble(features: jax.Array, ratio: float, feature_types=("image", "text")) -> jax.Array:
    """features f32[B, k, D] (raw, path-averaged) -> ratio * text + image, f32[B, D] (spec 2.8)."""
    image = features[:, feature_types.index("image")]
    text = features[:, feature_types.index("text")]
    return ratio * text + image


def cosine_logits(point_features: jax.Array, text_features: jax.Array, scale: float = 1.0) -> jax.Array:
    """scale * cosine similarity: (B, D) x (C, D) -> (B, C)."""
    p = point_features / jnp.linalg.norm(point_features, axis=-1, keepdims=True)
    t = text_features / jnp.linalg.norm(text_features, axis=-1, keepdims=True)
    return scale * jnp.einsum("bd,cd->bc", p, t)


def accuracy_report(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
    """top1, top5, mean_class_acc (fractions) and per_class accuracy (None for classes absent from labels)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    pred = logits.argmax(axis=1)
    k = min(5, logits.shape[1])
    top5 = (np.argsort(-logits, axis=1, kind="stable")[:, :k] == labels[:, None]).any(axis=1)
    per_class = [float((pred[labels == c] == c).mean()) if (labels == c).any() else None
                 for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return {"top1": float((pred == labels).mean()), "top5": float(top5.mean()),
            "mean_class_acc": float(np.mean(present)), "per_class": per_class, "num_samples": int(len(labels))}


def evaluate(infer, variables, batches: Iterable[dict], text_features, *, ratio: float, t: int, num_paths: int,
             key: jax.Array, feature_types=("image", "text")) -> dict:
    """Runs `infer` (jitted, static t/num_paths) batch by batch; batch i uses fold_in(key, i)."""
    text_features = jnp.asarray(text_features)
    all_logits, all_labels = [], []
    for i, batch in enumerate(batches):
        feats = infer(variables, jnp.asarray(batch["points"]), jax.random.fold_in(key, i), t=t, num_paths=num_paths)
        all_logits.append(np.asarray(cosine_logits(ensemble(feats, ratio, feature_types), text_features)))
        all_labels.append(np.asarray(batch["label"]))
    logits, labels = np.concatenate(all_logits), np.concatenate(all_labels)
    report = accuracy_report(logits, labels, text_features.shape[0])
    report.update({"N": num_paths, "t": t, "ratio": ratio})
    return report
