"""Published zero-shot 3D encoders as ddjax models: ReCon (`recon`) and ULIP's Point-BERT
(`ulip_pointbert`).

A converted run folder (`configs/convert.py`) records `model.kind`; ddjax/models/registry.py then
builds the model here instead of Dual Denoising, with the same `Inference` (features f32[B, k, D]
named by `feature_types`). The models are deterministic: every "path" is the same, and the jobs run
them at one path, t = 0. `ddjax.baselines.load(RUN_DIR)` gives scripts their named outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ddjax.models import recon, ulip_pointbert
from ddjax.models.interface import Inference

MODELS = ("recon", "ulip_pointbert")
# Per model: architecture (inferred again from a checkpoint's shapes where they show), tokenization
# and evaluation defaults (ReCon's cfgs/zeroshot/modelnet40.yaml; ULIP's
# PointTransformer_8192point.yaml) and the text side: ReCon's class features are CLIP ViT-B/32's (a
# ddjax teacher), ULIP-1's come from SLIP's text tower, which ddjax does not port
# (--config.text_features).
DEFAULTS = {
    "recon": dict(
        width=384,
        depth=12,
        num_heads=6,
        encoder_dims=384,
        embed_dim=512,
        num_groups=64,
        group_size=32,
        npoints=1024,
        ratio=0.25,
        feature_types=["image", "text"],
        own_tokenization=False,
    ),
    "ulip_pointbert": dict(
        width=384,
        depth=12,
        num_heads=6,
        encoder_dims=256,
        embed_dim=512,
        num_groups=512,
        group_size=32,
        npoints=8192,
        ratio=0.0,
        feature_types=["point"],
        own_tokenization=True,
    ),
}
# own_tokenization: ULIP always groups 512 x 32 (its yaml); ReCon, like Dual Denoising, takes the
# dataset's tokenization from the job's config (ReCon's own per-dataset zero-shot configs, spec
# 4.4).
TEACHERS = {"recon": "openai/clip-vit-base-patch32", "ulip_pointbert": ""}


def is_baseline(model_config) -> bool:
    return model_config.get("kind", "dual_denoising") in MODELS


def model_config(kind: str, **overrides) -> ml_collections.ConfigDict:
    """The run record's `model` entry. `num_timesteps` = 1: the only noise step is t = 0."""
    config = dict(DEFAULTS[kind], kind=kind, **overrides)
    config.update(teacher_dim=config["embed_dim"], num_timesteps=1)
    return ml_collections.ConfigDict(config)


def build_model(config):
    shape = dict(
        width=config.width,
        depth=config.depth,
        num_heads=config.num_heads,
        encoder_dims=config.encoder_dims,
        num_groups=config.num_groups,
        group_size=config.group_size,
    )
    if config.kind == "recon":
        return recon.ReconZeroShot(image_dim=config.embed_dim, text_dim=config.embed_dim, **shape)
    return ulip_pointbert.UlipPointBert(embed_dim=config.embed_dim, **shape)


def init_variables(config, key: jax.Array) -> dict:
    points = jax.random.normal(key, (1, max(config.num_groups, config.group_size), 3))  # (1, N, 3)
    return build_model(config).init(key, points)


def _stack(config, out: dict) -> jax.Array:
    """The model's outputs as features f32[B, k, D] in `feature_types` order."""
    if config.kind == "recon":
        # (B, 2, D): image, text
        return jnp.stack([out["img_feature"], out["text_feature"]], axis=1)
    return out["pc_embed"][:, None]  # (B, 1, D)


def make_inference(config) -> Inference:
    """The inference interface of a deterministic model: `infer` and `infer_path` are
    (variables, points f32[B, N, 3], key, t, num_paths, ...) -> f32[B, k, D] with `key` and `t`
    unused; every path is the same computation (`num_paths` = 1), so `infer_paths` repeats one
    forward pass."""
    model = build_model(config)

    def infer_path(variables, points, path_key=None, t: int = 0):
        del path_key, t
        return _stack(config, model.apply(variables, points))

    def infer_paths(
        variables,
        points,
        key=None,
        t: int = 0,
        num_paths: int = 1,
        share_encoder_at_t0: bool = True,
        paths_per_step: int | None = None,
    ):
        feats = infer_path(variables, points)
        return jnp.broadcast_to(feats[None], (num_paths, *feats.shape))  # (N, B, k, D)

    def infer(
        variables,
        points,
        key=None,
        t: int = 0,
        num_paths: int = 1,
        share_encoder_at_t0: bool = True,
        paths_per_step: int | None = None,
    ):
        return infer_path(variables, points)

    return Inference(
        infer=infer,
        infer_path=infer_path,
        infer_paths=infer_paths,
        feature_types=tuple(config.feature_types),
        num_paths=1,
    )
