"""Dual Denoising: the model (PointDAE + feature-denoising branch), its config, the training loss
and the parallel-noise inference function (paper section 3; spec sections 1, 2 and 6).

    config = model_config("base")            # or "small", "tiny"; every ablation is a field
    model = build_model(config)
    variables = init_variables(config, key)  # {'params', 'batch_stats'}
    loss_fn = make_train_loss(config)        # (variables, batch, key) -> (loss, (metrics, stats))
    inference = make_inference(config)       # an Inference (models/interface.py): .infer(variables,
                                             # points, key, t, num_paths) -> f32[B, k, D], ...

The model never draws random numbers itself: noise comes in as arguments, and drop path reads the
'drop_path' rng passed to `apply`.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ddjax import errors, losses, pointcloud
from ddjax.models import blocks
from ddjax.models.feature_denoiser import FEATURE_INPUTS, FeatureDenoiser
from ddjax.models.interface import Inference
from ddjax.models.point_dae import PointDAEDecoder, PointDAEEncoder
from ddjax.models.tokenizer import PATCH_WIDTHS, MiniPointNet, PositionMlp

TARGET_FRAMES = ("clean", "noisy")

# Model sizes. `base` is the paper's (ReCon's backbone); `tiny` is for tests and smoke runs.
VARIANTS = {
    "base": dict(
        width=384,
        depth=12,
        num_heads=6,
        mlp_ratio=4.0,
        decoder_depth=4,
        teacher_dim=512,
        num_groups=64,
        group_size=32,
    ),
    "small": dict(
        width=256,
        depth=8,
        num_heads=4,
        mlp_ratio=4.0,
        decoder_depth=2,
        teacher_dim=512,
        num_groups=64,
        group_size=32,
    ),
    "tiny": dict(
        width=32,
        depth=2,
        num_heads=2,
        mlp_ratio=2.0,
        decoder_depth=1,
        teacher_dim=16,
        num_groups=16,
        group_size=8,
    ),
}


def model_config(variant: str = "base", **overrides) -> ml_collections.ConfigDict:
    """The model's config: a size from VARIANTS plus the method's settings, each switchable for
    ablations.

    Fields beyond the size (defaults from spec section 6):
      noise_scale s = 0.08 (sigma_t = s t / (T - 1); 0 removes the point noise), num_timesteps T
      = 1000, delta = 100 (t' = t // delta; 1 = no merging, T = no timestep conditioning),
      feature_input 'noise' | 'learned' ('learned' = ReCon's query tokens = "remove feature
      denoising"), stop_gradient True (feature branch K/V), target_frame 'clean' | 'noisy' (the
      clean target relative to the clean or the noisy center), mask_ratio 0
      (masking-versus-denoising ablation), alpha = 1 (weight of the feature loss), drop_path
      0.1, feature_types ('image', 'text'), dtype 'float32', remat False (recompute each block's
      activations in the backward pass: less memory, more compute; the same values), patch_widths
      (128, 256, 512) (the mini-PointNet's hidden widths, Point-MAE's and the paper's; the smoke
      model's are smaller: nine tenths of its step were the mini-PointNet's).
    """
    if variant not in VARIANTS:
        raise ValueError(f"model variant must be one of {sorted(VARIANTS)}, got {variant!r}")
    config = ml_collections.ConfigDict(
        dict(
            variant=variant,
            **VARIANTS[variant],
            drop_path=0.1,
            feature_types=("image", "text"),
            feature_input="noise",
            stop_gradient=True,
            noise_scale=0.08,
            num_timesteps=1000,
            delta=100,
            target_frame="clean",
            mask_ratio=0.0,
            alpha=1.0,
            dtype="float32",
            remat=False,
            patch_widths=PATCH_WIDTHS,
        )
    )
    config.update(overrides)
    validate_config(config)
    return config


def validate_config(config) -> None:
    """Raises ConfigError (a ValueError) naming the field (config.model.<field>) for
    any bad value."""

    def need(ok: bool, field: str, what: str):
        if not ok:
            raise errors.ConfigError(f"model.{field}", f"{what}, got {config[field]!r}")

    for field in (
        "width",
        "depth",
        "num_heads",
        "decoder_depth",
        "teacher_dim",
        "num_groups",
        "group_size",
        "num_timesteps",
        "delta",
    ):
        need(
            isinstance(config[field], (int, np.integer)) and config[field] >= 1,
            field,
            "must be an integer >= 1",
        )
    need(
        config.width % config.num_heads == 0,
        "width",
        f"must be divisible by num_heads={config.num_heads}",
    )
    need(config.mlp_ratio > 0, "mlp_ratio", "must be > 0")
    need(0 <= config.drop_path < 1, "drop_path", "must be in [0, 1)")
    need(config.noise_scale >= 0, "noise_scale", "must be >= 0")
    need(
        config.delta <= config.num_timesteps,
        "delta",
        f"must be <= num_timesteps={config.num_timesteps}",
    )
    need(
        config.feature_input in FEATURE_INPUTS, "feature_input", f"must be one of {FEATURE_INPUTS}"
    )
    need(config.target_frame in TARGET_FRAMES, "target_frame", f"must be one of {TARGET_FRAMES}")
    need(0 <= config.mask_ratio < 1, "mask_ratio", "must be in [0, 1)")
    need(
        isinstance(config.feature_types, (tuple, list))
        and all(isinstance(t, str) for t in config.feature_types),
        "feature_types",
        "must be a tuple of names such as ('image',), not a string",
    )
    need(len(config.feature_types) >= 1, "feature_types", "must name at least one type")
    need(config.dtype in ("float32", "bfloat16"), "dtype", "must be 'float32' or 'bfloat16'")
    need(config.alpha >= 0, "alpha", "must be >= 0")
    need(isinstance(config.get("remat", False), bool), "remat", "must be True or False")
    widths = config.get("patch_widths", PATCH_WIDTHS)
    need(
        isinstance(widths, (tuple, list))
        and len(widths) == 3
        and all(isinstance(w, (int, np.integer)) and w >= 1 for w in widths),
        "patch_widths",
        "must be three integers >= 1 (the mini-PointNet's hidden widths, e.g. (128, 256, 512))",
    )
    need(
        set(config.feature_types) <= {"image", "text"}
        and len(set(config.feature_types)) == len(config.feature_types),
        "feature_types",
        "must be distinct names from ('image', 'text')",
    )


def num_visible(config) -> int:
    """Tokens the encoder sees: all of them, or G - int(mask_ratio * G) with masking (ReCon: 64 -
    38)."""
    return config.num_groups - int(config.mask_ratio * config.num_groups)


class DualDenoising(nn.Module):
    """PointDAE (tokenizer, AdaLN-Zero encoder and decoder on t') plus the
    feature-denoising branch."""

    feature_types: Sequence[str]
    teacher_dim: int
    width: int
    depth: int
    num_heads: int
    mlp_ratio: float
    decoder_depth: int
    drop_path: float
    group_size: int
    num_visible: int
    masking: bool = False
    feature_input: str = "noise"
    stop_gradient: bool = True
    dtype: Any = jnp.float32
    remat: bool = False
    patch_widths: tuple[int, int, int] = PATCH_WIDTHS

    def setup(self):
        enc_rates = tuple(float(r) for r in np.linspace(0.0, self.drop_path, self.depth))
        dec_rates = tuple(float(r) for r in np.linspace(0.0, self.drop_path, self.decoder_depth))
        self.patch_embed = MiniPointNet(self.width, self.patch_widths, dtype=self.dtype)
        self.pos_embed = PositionMlp(self.width, dtype=self.dtype)
        self.timestep_embedder = blocks.TimestepEmbedder(self.width, dtype=self.dtype)
        self.encoder = PointDAEEncoder(
            self.depth, self.num_heads, self.mlp_ratio, enc_rates, self.dtype, self.remat
        )
        self.decoder_pos_embed = PositionMlp(
            self.width,
            kernel_init=blocks.torch_linear_kernel_init(),
            bias_init_fan_in=True,
            dtype=self.dtype,
        )
        self.decoder = PointDAEDecoder(
            self.decoder_depth,
            self.num_heads,
            self.mlp_ratio,
            dec_rates,
            self.group_size,
            self.dtype,
            self.remat,
        )
        self.feature_branch = FeatureDenoiser(
            self.feature_types,
            self.teacher_dim,
            self.width,
            self.num_heads,
            self.mlp_ratio,
            enc_rates,
            self.feature_input,
            self.stop_gradient,
            self.dtype,
            self.remat,
        )
        if self.masking:
            self.mask_token = self.param("mask_token", blocks.normal_002, (1, 1, self.width))

    def encode(
        self,
        neighborhoods: jax.Array,
        centers: jax.Array,
        t_merged: jax.Array,
        *,
        train: bool = False,
        visible: jax.Array | None = None,
    ) -> dict:
        """neighborhoods (B, G, K, 3), centers (B, G, 3), t_merged int[B]; visible int[B, V] or
        None.

        Returns {'tokens': (B, V, C) after the final LayerNorm, 'layers': (depth, B, V, C) (the
        tokens entering each block, incl. position), 'cond': (B, C) timestep embedding}.
        """
        tokens = self.patch_embed(neighborhoods, train)  # (B, G, C)
        pos = self.pos_embed(centers)  # (B, G, C)
        if visible is not None:
            tokens = jnp.take_along_axis(tokens, visible[..., None], axis=1)  # (B, V, C)
            pos = jnp.take_along_axis(pos, visible[..., None], axis=1)
        cond = self.timestep_embedder(t_merged)  # (B, C)
        out, layers = self.encoder(tokens, pos, cond, not train)
        return {"tokens": out, "layers": layers, "cond": cond}

    def denoise_features(
        self, layers: jax.Array, noise: jax.Array, *, train: bool = False
    ) -> jax.Array:
        """layers (depth, B, V, C) from `encode`, noise f32[B, k, D] -> features f32[B, k, D]."""
        return self.feature_branch(noise, layers, not train)

    def reconstruct(
        self,
        encoded: dict,
        centers: jax.Array,
        *,
        train: bool = False,
        order: jax.Array | None = None,
    ) -> jax.Array:
        """Decoder on all tokens -> (B, G, K, 3). With masking (`order` int[B, G]: visible first),
        the masked positions get the learned mask token and the output follows `order`."""
        x, cond = encoded["tokens"], encoded["cond"]
        pos = self.decoder_pos_embed(centers)  # (B, G, C)
        if order is not None:
            if not self.masking:
                raise ValueError(
                    "reconstruct: `order` (masking) given to a model built with mask_ratio = 0"
                )
            pos = jnp.take_along_axis(pos, order[..., None], axis=1)  # (B, G, C) in `order`
            b, v, c = x.shape
            masked = jnp.broadcast_to(self.mask_token.astype(x.dtype), (b, pos.shape[1] - v, c))
            x = jnp.concatenate([x, masked], axis=1)  # (B, G, C)
        return self.decoder(x, pos, cond, not train)

    def __call__(
        self,
        neighborhoods: jax.Array,
        centers: jax.Array,
        t_merged: jax.Array,
        noise: jax.Array,
        *,
        train: bool = False,
        order: jax.Array | None = None,
    ):
        """Returns ((reconstruction (B, G, K, 3), features (B, k, D)), aux) with named
        intermediates."""
        visible = None if order is None else order[:, : self.num_visible]
        encoded = self.encode(neighborhoods, centers, t_merged, train=train, visible=visible)
        features = self.denoise_features(encoded["layers"], noise, train=train)
        recon = self.reconstruct(encoded, centers, train=train, order=order)
        aux = {"tokens": encoded["tokens"], "denoised_feat": features}
        aux.update({f"enc/block{i:02d}": encoded["layers"][i] for i in range(self.depth)})
        return (recon, features), aux


def build_model(config) -> DualDenoising:
    validate_config(config)
    return DualDenoising(
        feature_types=tuple(config.feature_types),
        teacher_dim=config.teacher_dim,
        width=config.width,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        decoder_depth=config.decoder_depth,
        drop_path=config.drop_path,
        group_size=config.group_size,
        num_visible=num_visible(config),
        masking=config.mask_ratio > 0,
        feature_input=config.feature_input,
        stop_gradient=config.stop_gradient,
        dtype=jnp.dtype(config.dtype),
        # absent from the records of runs made before it existed
        remat=bool(config.get("remat", False)),
        patch_widths=tuple(config.get("patch_widths", PATCH_WIDTHS)),
    )


def _dummy_inputs(config, batch: int = 2):
    g, k, d = config.num_groups, config.group_size, config.teacher_dim
    return (
        jnp.zeros((batch, g, k, 3)),
        jnp.zeros((batch, g, 3)),
        jnp.zeros((batch,), jnp.int32),
        jnp.zeros((batch, len(config.feature_types), d)),
    )


def init_variables(config, key: jax.Array) -> dict:
    """{'params', 'batch_stats'} for `config`, initialised from `key`."""
    return build_model(config).init({"params": key}, *_dummy_inputs(config))


def parameter_counts(config) -> dict[str, int]:
    """Parameter counts per component, from shapes only (`jax.eval_shape`, nothing is
    initialised)."""
    shapes = jax.eval_shape(lambda k: init_variables(config, k), jax.random.key(0))["params"]
    size = lambda tree: int(sum(np.prod(x.shape) for x in jax.tree_util.tree_leaves(tree)))
    branch = dict(shapes["feature_branch"])
    heads = {n: branch.pop(n) for n in list(branch) if n.endswith("_proj")}
    decoder = dict(shapes["decoder"])
    head = decoder.pop("reconstruction_head")
    counts = {
        "patch_embed": size(shapes["patch_embed"]),
        "position_mlps": size(shapes["pos_embed"]) + size(shapes["decoder_pos_embed"]),
        "timestep_embedder": size(shapes["timestep_embedder"]),
        "encoder": size(shapes["encoder"]),
        "decoder": size(decoder) + size(shapes.get("mask_token", ())),
        "reconstruction_head": size(head),
        "feature_branch": size(branch),
        "feature_heads": size(heads),
    }
    counts["total"] = sum(counts.values())
    return counts


# Checkpoints written before the stacks were scanned (ddjax up to commit 3db8652) hold one subtree
# per block, `encoder/block00` ... `encoder/block11` (likewise `decoder/`, `feature_branch/`);
# today's layout stacks them as `encoder/blocks` with a leading layer axis. `stack_layers` converts
# a tree (variables, a whole train state with its optimiser moments, or a checkpoint's shapes) from
# the old layout, `unstack_layers` goes back; the jobs convert an old checkpoint as they restore it
# (zeroshot.restore_run, the trainer's resume and init_from).
def _unrolled(node) -> bool:
    return isinstance(node, dict) and "block00" in node


def _stacked(node) -> bool:
    return isinstance(node, dict) and isinstance(node.get("blocks"), dict)


def is_unrolled(tree) -> bool:
    """Whether `tree` holds a block stack in the unrolled layout of checkpoints made before
    scanning."""
    return any(_unrolled(x) for x in jax.tree_util.tree_leaves(tree, is_leaf=_unrolled))


def stack_layers(tree):
    """The unrolled layout -> today's: {'block00': t0, ..., 'blockNN': tN, ...} -> {'blocks':
    stack(t), ...} wherever it occurs in `tree` (arrays are stacked on a new leading axis)."""

    def stack(node):
        # block00 ... block11: in layer order
        names = sorted(k for k in node if re.fullmatch(r"block\d{2}", k))
        if names != [f"block{i:02d}" for i in range(len(names))]:
            raise ValueError(
                f"an unrolled block stack must hold block00..block{len(names) - 1:02d}, got {names}"
            )
        rest = {k: v for k, v in node.items() if k not in names}
        return {
            **rest,
            "blocks": jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *[node[n] for n in names]),
        }

    return jax.tree_util.tree_map(
        lambda x: stack(x) if _unrolled(x) else x, tree, is_leaf=_unrolled
    )


def unstack_layers(tree):
    """Today's layout -> the unrolled one (the inverse of `stack_layers`); abstract leaves
    (jax.ShapeDtypeStruct, e.g. a restore target) lose their leading axis."""

    def take(x, i):
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.ShapeDtypeStruct(x.shape[1:], x.dtype, sharding=x.sharding)
        return x[i]

    def unstack(node):
        depth = jax.tree_util.tree_leaves(node["blocks"])[0].shape[0]
        rest = {k: v for k, v in node.items() if k != "blocks"}
        return {
            **rest,
            **{
                f"block{i:02d}": jax.tree_util.tree_map(lambda x: take(x, i), node["blocks"])
                for i in range(depth)
            },
        }

    return jax.tree_util.tree_map(
        lambda x: unstack(x) if _stacked(x) else x, tree, is_leaf=_stacked
    )


def check_points(points, config, where: str) -> None:
    """points must be f32[B, N, 3] with N >= the tokenizer's needs; ValueError naming the sizes if
    not."""
    shape = tuple(jnp.shape(points))
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{where}: points must have shape [B, N, 3], got {shape}")
    need = max(config.num_groups, config.group_size)
    if shape[1] < need:
        raise ValueError(
            f"{where}: clouds have N={shape[1]} points, fewer than the tokenizer needs "
            f"(num_groups={config.num_groups} centers, group_size={config.group_size} neighbours)"
        )


def merged_timestep(t: jax.Array, delta: int) -> jax.Array:
    """The network's time input t' = floor(t / delta) (the noise level uses the full t: spec trap
    16)."""
    return jnp.asarray(t, jnp.int32) // delta


def reconstruction_target(groups: pointcloud.NoisyGroups, frame: str) -> jax.Array:
    """The clean tokens to reconstruct, f32[B, G, K, 3]: the clean kNN groups relative to the clean
    center ('clean', the default) or to the noisy center the model sees ('noisy': also denoises the
    center)."""
    target = groups.clean.neighborhoods  # clean points minus clean centers
    if frame == "noisy":
        target = target + (groups.clean.centers - groups.noisy.centers)[:, :, None, :]
    return target


def make_train_loss(config) -> Callable:
    """The training loss `(variables, batch, key) -> (loss, (metrics, new_batch_stats))`.

    batch: {'points': f32[B, N, 3] clean clouds, '<type>_features': f32[B, D] raw teacher features
    for each feature type ('image_features', 'text_features')}. Per sample: t ~ U{0..T-1}, noisy =
    clean + sigma_t eps, FPS on clean, grouped as `pointcloud.group_noisy`. loss = mean_b lambda_t
    CD_b + alpha sum_types SmoothL1(type). Drop path and BatchNorm run in training mode.
    """
    model = build_model(config)
    types = tuple(config.feature_types)

    def loss_fn(variables, batch, key):
        points = batch["points"]
        check_points(points, config, "train loss")
        b = points.shape[0]
        k_t, k_noise, k_feat, k_drop, k_mask = jax.random.split(key, 5)
        t = jax.random.randint(k_t, (b,), 0, config.num_timesteps)
        sigma = pointcloud.noise_sigma(
            t, noise_scale=config.noise_scale, num_timesteps=config.num_timesteps
        )
        noisy = pointcloud.add_noise(points, sigma, k_noise)
        groups = pointcloud.group_noisy(points, noisy, config.num_groups, config.group_size)
        noise = jax.random.normal(k_feat, (b, len(types), config.teacher_dim))
        order = None
        if config.mask_ratio > 0:
            order = jax.vmap(lambda k: jax.random.permutation(k, config.num_groups))(
                jax.random.split(k_mask, b)
            )
        ((recon, features), _), new_state = model.apply(
            variables,
            groups.noisy.neighborhoods,
            groups.noisy.centers,
            merged_timestep(t, config.delta),
            noise,
            train=True,
            order=order,
            rngs={"drop_path": k_drop},
            mutable=["batch_stats"],
        )
        target = reconstruction_target(groups, config.target_frame)  # (B, G, K, 3)
        if order is not None:
            target = jnp.take_along_axis(target, order[:, :, None, None], axis=1)
        chamfer = losses.chamfer_l2_per_sample(recon, target)  # (B,)
        weight = pointcloud.loss_weight(sigma)  # (B,)
        loss_recon = jnp.mean(weight * chamfer)
        teacher = jnp.stack([batch[f"{name}_features"] for name in types], axis=1)  # (B, k, D)
        per_type = {
            name: losses.smooth_l1(features[:, i], teacher[:, i]) for i, name in enumerate(types)
        }
        loss_features = sum(per_type.values())
        loss = loss_recon + config.alpha * loss_features
        metrics = {
            "loss": loss,
            "loss_recon": loss_recon,
            "loss_features": loss_features,
            "chamfer": jnp.mean(chamfer),
            "lambda_t": jnp.mean(weight),
            "sigma_t": jnp.mean(sigma),
        }
        metrics.update({f"loss_{name}": v for name, v in per_type.items()})
        return loss, (metrics, new_state["batch_stats"])

    return loss_fn


def default_paths_per_step() -> int | None:
    """How many noise paths one vmap step evaluates when the caller does not say (None: all of
    them).

    Measured with benchmarks/model.py (base model, batch 32, t = 600, 2-core CPU): 8 paths in
    one vmap took 8.6-13.8x one path (the per-path working set, above all the mini-PointNet's
    (B, G, K, 512) activations, falls out of cache), 2 paths per step 7.4-8.8x, one path per step
    6.9-7.4x. So on CPU the vmapped path function runs one key at a time; accelerators take all
    paths in one vmap.
    """
    return 1 if jax.default_backend() == "cpu" else None


def make_inference(config) -> Inference:
    """Parallel noise inference (paper Eq. 4): the model's `Inference` (infer, infer_path,
    infer_paths, on_noisy).

    infer(variables, points, key, t, num_paths) -> f32[B, k, D]: the mean over `num_paths` paths of
      `infer_path`, with path j using `jax.random.split(key, num_paths)[j]`, computed by
      `jax.vmap`. At t = 0 every path sees the same clean tokens, so the encoder runs once and only
      the feature branch is vmapped (spec D8); `share_encoder_at_t0=False` forces the general path
      (same result). `paths_per_step` vmaps that many paths at a time (a `lax.map` over chunks;
      same values); None takes `default_paths_per_step()`.
    infer_path(variables, points, path_key, t) -> f32[B, k, D]: one path. FPS on the (clean) test
      cloud, eps1 on xyz at sigma_t, noisy centers by the clean indices, kNN in the noisy cloud,
      encoder on t' = t // delta, eps2 through the feature branch. BatchNorm uses running
      statistics.
    `t` and `num_paths` are static: jit with `static_argnames=('t', 'num_paths')`.
    """
    paths = _NoisePaths(config, build_model(config))
    return Inference(
        infer=paths.infer,
        infer_path=paths.infer_path,
        infer_paths=paths.infer_paths,
        feature_types=tuple(config.feature_types),
        on_noisy=paths.on_noisy,
    )


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: jax.jit takes its methods
class _NoisePaths:
    """The functions of `make_inference`, closed over the model config and the built model."""

    config: Any
    model: DualDenoising

    def tokenize(self, points, idx, sigma, key):
        """Noised (key None: clean) groups around the centers `idx`: ((B, G, K, 3), (B, G, 3))."""
        noisy = points if key is None else pointcloud.add_noise(points, sigma, key)
        centers = pointcloud.gather_points(noisy, idx)  # (B, G, 3)
        nbr = pointcloud.knn(centers, noisy, self.config.group_size)  # (B, G, K)
        return pointcloud.gather_points(noisy, nbr) - centers[:, :, None, :], centers

    def encode(self, variables, points, idx, t, key):
        c = self.config
        sigma = pointcloud.noise_sigma(t, noise_scale=c.noise_scale, num_timesteps=c.num_timesteps)
        neighborhoods, centers = self.tokenize(points, idx, sigma, key)
        t_merged = jnp.full((points.shape[0],), t // c.delta, jnp.int32)
        return self.model.apply(
            variables, neighborhoods, centers, t_merged, method=DualDenoising.encode
        )

    def features(self, variables, layers, key, batch):
        noise = jax.random.normal(
            key, (batch, len(self.config.feature_types), self.config.teacher_dim)
        )
        return self.model.apply(variables, layers, noise, method=DualDenoising.denoise_features)

    def infer_path(self, variables, points, path_key, t: int):
        check_points(points, self.config, "inference")
        idx = pointcloud.fps(points, self.config.num_groups)  # (B, G), on the clean test cloud
        k_points, k_feat = jax.random.split(path_key)
        encoded = self.encode(variables, points, idx, t, k_points)
        return self.features(variables, encoded["layers"], k_feat, points.shape[0])

    def infer_paths(
        self,
        variables,
        points,
        key,
        t: int,
        num_paths: int,
        share_encoder_at_t0: bool = True,
        paths_per_step: int | None = None,
    ):
        """The per-path outputs f32[N, B, k, D] whose mean `infer` returns (path j: split(key,
        N)[j])."""
        check_points(points, self.config, "inference")
        if not isinstance(num_paths, int) or num_paths < 1:
            raise ValueError(f"inference: num_paths must be a positive int, got {num_paths!r}")
        if not isinstance(t, int) or not 0 <= t < self.config.num_timesteps:
            raise ValueError(
                f"inference: t must be an int in [0, {self.config.num_timesteps}), got {t!r}"
            )
        keys = jax.random.split(key, num_paths)  # (N,)
        if t == 0 and share_encoder_at_t0:
            idx = pointcloud.fps(points, self.config.num_groups)
            # sigma_0 = 0: every path's tokens are equal
            encoded = self.encode(variables, points, idx, 0, None)
            feat_keys = jax.vmap(lambda k: jax.random.split(k)[1])(keys)
            return jax.vmap(
                lambda k: self.features(variables, encoded["layers"], k, points.shape[0])
            )(feat_keys)
        step = default_paths_per_step() if paths_per_step is None else paths_per_step
        path = lambda k: self.infer_path(variables, points, k, t)
        if step is None or step >= num_paths:
            return jax.vmap(path)(keys)  # (N, B, k, D)
        return jax.lax.map(path, keys, batch_size=step)  # `step` keys vmapped at a time

    def infer(
        self,
        variables,
        points,
        key,
        t: int,
        num_paths: int,
        share_encoder_at_t0: bool = True,
        paths_per_step: int | None = None,
    ):
        paths = self.infer_paths(
            variables, points, key, t, num_paths, share_encoder_at_t0, paths_per_step
        )
        return jnp.mean(paths, axis=0)

    def on_noisy(self, variables, noisy, key, t: int):
        """One path on a cloud the caller has already noised (randomized smoothing's base
        classifier, ddjax/smoothing.py): FPS and kNN on `noisy` itself, no further point noise, the
        encoder at t // delta, feature noise from `key`. noisy f32[B, N, 3] -> f32[B, k, D]."""
        check_points(noisy, self.config, "inference")
        # (B, G), on the noisy cloud: f depends on x only through x~
        idx = pointcloud.fps(noisy, self.config.num_groups)
        encoded = self.encode(variables, noisy, idx, t, None)
        return self.features(variables, encoded["layers"], key, noisy.shape[0])
