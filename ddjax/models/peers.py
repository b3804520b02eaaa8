"""Published zero-shot 3D encoders as ddjax models: ReCon (`recon`), ULIP's Point-BERT
(`ulip_pointbert`), ULIP-2's coloured Point-BERT (`ulip2_pointbert`) and Uni3D's point encoder
(`uni3d`, in every published size).

A converted run folder (`configs/convert.py`) records `model.kind`; ddjax/models/registry.py then
builds the model here instead of Dual Denoising, with the same `Inference` (features f32[B, k, D]
named by `feature_types`). The models are deterministic: every "path" is the same, and the jobs run
them at one path, t = 0. `ddjax.baselines.load(RUN_DIR)` gives scripts their named outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections

from ddjax.models import recon, ulip_pointbert, uni3d
from ddjax.models.interface import Inference

MODELS = ("recon", "ulip_pointbert", "ulip2_pointbert", "uni3d")
# What configs/convert.py's --config.model takes: a kind, or uni3d_<size>.
CONVERTIBLE = ("recon", "ulip_pointbert", "ulip2_pointbert") + tuple(
    f"uni3d_{size}" for size in uni3d.SIZES
)
_POINT_BERT = dict(
    width=384, depth=12, num_heads=6, encoder_dims=256, num_groups=512, group_size=32
)
# ULIP, ULIP-2 and Uni3D: one point feature, their own input (see own_tokenization below)
_OWN_INPUT = dict(ratio=0.0, feature_types=["point"], own_tokenization=True)
# Per model: architecture (inferred again from a checkpoint's shapes where they show), input,
# tokenization and evaluation defaults (ReCon's cfgs/zeroshot/modelnet40.yaml; ULIP's
# PointTransformer_8192point.yaml; ULIP-2's ULIP_2_PointBERT_10k_colored_pointclouds.yaml; Uni3D's
# scripts/inference.sh) and the text side: ReCon's class features are CLIP ViT-B/32's (a ddjax
# teacher); ULIP-1's come from SLIP's text tower, ULIP-2's from OpenCLIP ViT-bigG-14 and Uni3D's
# from EVA02-E-14-plus, which ddjax does not port (class text features from a file).
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
        _POINT_BERT,
        embed_dim=512,
        npoints=8192,
        **_OWN_INPUT,
    ),
    "ulip2_pointbert": dict(
        _POINT_BERT,
        depth=18,
        embed_dim=1280,
        npoints=10000,
        colour=0.4,
        **_OWN_INPUT,
    ),
    "uni3d": dict(
        uni3d.SIZES["tiny"],
        size="tiny",
        encoder_dims=512,
        embed_dim=1024,
        num_groups=512,
        group_size=64,
        npoints=10000,
        colour=0.4,
        **_OWN_INPUT,
    ),
}
# own_tokenization: ULIP, ULIP-2 and Uni3D always read their own input (npoints per cloud, as
# stored; their own groups); ReCon, like Dual Denoising, takes the dataset's points and tokenization
# from the job's config (ReCon's own per-dataset zero-shot configs, spec 4.4).
TEACHERS = {"recon": "openai/clip-vit-base-patch32"}  # the others: none (text features from a file)
# Each port's source, for run records and the docs: repository, commit, licence.
SOURCES = {
    "recon": "github.com/qizekun/ReCon @ 51a8be05 (MIT)",
    "ulip_pointbert": "github.com/salesforce/ULIP @ f194ddbf (BSD-3-Clause)",
    "ulip2_pointbert": "github.com/salesforce/ULIP @ f194ddbf (BSD-3-Clause)",
    "uni3d": "github.com/baaivision/Uni3D @ 64e03c3c with timm 0.9.7's EVA blocks (MIT; timm "
    "Apache-2.0)",
}


def kind_of(model: str) -> tuple[str, dict]:
    """A --config.model name -> (its kind, the architecture it fixes): `uni3d_<size>` -> ('uni3d',
    that size's row of uni3d.SIZES)."""
    if model.startswith("uni3d_"):
        size = model[len("uni3d_") :]
        return "uni3d", dict(uni3d.SIZES[size], size=size)
    return model, {}


def is_baseline(model_config) -> bool:
    return model_config.get("kind", "dual_denoising") in MODELS


def model_config(kind: str, **overrides) -> ml_collections.ConfigDict:
    """The run record's `model` entry. `num_timesteps` = 1: the only noise step is t = 0."""
    config = dict(DEFAULTS[kind], kind=kind, **overrides)
    config.update(teacher_dim=config["embed_dim"], num_timesteps=1)
    return ml_collections.ConfigDict(config)


def build_model(config):
    """The Flax module of a peer's model config (the run record's `model`)."""
    shape = dict(
        depth=config.depth,
        num_heads=config.num_heads,
        encoder_dims=config.encoder_dims,
        num_groups=config.num_groups,
        group_size=config.group_size,
    )
    if config.kind == "recon":
        return recon.ReconZeroShot(
            width=config.width, image_dim=config.embed_dim, text_dim=config.embed_dim, **shape
        )
    if config.kind == "uni3d":
        return uni3d.Uni3D(
            width=config.width,
            mlp_hidden=config.mlp_hidden,
            attention=config.attention,
            mlp=config.mlp,
            embed_dim=config.embed_dim,
            colour=config.colour,
            **shape,
        )
    return ulip_pointbert.UlipPointBert(
        width=config.width,
        embed_dim=config.embed_dim,
        colour=config.get("colour"),  # ULIP-2's; ULIP-1 reads xyz only
        **shape,
    )


def init_variables(config, key: jax.Array) -> dict:
    points = jax.random.normal(key, (1, max(config.num_groups, config.group_size), 3))  # (1, N, 3)
    return build_model(config).init(key, points)


def _stack(config, out: dict) -> jax.Array:
    """The model's outputs as features f32[B, k, D] in `feature_types` order."""
    if config.kind == "recon":
        # (B, 2, D): image, text
        return jnp.stack([out["img_feature"], out["text_feature"]], axis=1)
    return out["pc_embed"][:, None]  # (B, 1, D): ULIP, ULIP-2, Uni3D


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
