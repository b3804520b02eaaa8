"""The feature-denoising branch: Gaussian noise -> CLIP image and text features (spec section 6.2).

Its blocks are one scanned layer (`feature_branch/blocks/...`, a leading layer axis), as PointDAE's.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ddjax.models import blocks

FEATURE_INPUTS = ("noise", "learned")


def projection_init(key, shape, dtype=jnp.float32):
    """ReCon's img_proj/text_proj weight init: Normal(mean 0.02, std 0.01) (sic, spec trap 6)."""
    return 0.02 + 0.01 * jax.random.normal(key, shape, dtype)


class FeatureDenoiser(nn.Module):
    """One token per feature type; block l cross-attends to the PointDAE encoder's tokens at layer
    l.

    Input `noise` (the paper): standard Gaussian noise of the teacher feature's shape, mapped by
    a shared Linear D -> C. Input `learned` (the paper's "remove feature denoising" ablation):
    learned tokens, as ReCon's img/text query tokens; the noise is then ignored. A learned
    per-type position is added before every block; a learned type embedding drives the
    AdaLN-Zero FFN. Output: final LayerNorm, then one Linear C -> D per type (named
    `<type>_proj`).
    """

    feature_types: Sequence[str]
    teacher_dim: int
    width: int
    num_heads: int
    mlp_ratio: float
    drop_path_rates: Sequence[float]
    feature_input: str = "noise"
    stop_gradient: bool = True
    dtype: blocks.Dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, noise: jax.Array, layers: jax.Array, deterministic: bool) -> jax.Array:
        """noise f32[B, k, D]; layers: the encoder's block inputs (depth, B, G, C) -> features
        f32[B, k, D]."""
        b, k = noise.shape[0], len(self.feature_types)
        if self.feature_input == "noise":
            h = nn.Dense(
                self.width, kernel_init=blocks.normal_002, dtype=self.dtype, name="noise_embed"
            )(noise)
        elif self.feature_input == "learned":
            tokens = self.param("feature_tokens", blocks.normal_002, (1, k, self.width))
            h = jnp.broadcast_to(tokens, (b, k, self.width)).astype(self.dtype)
        else:
            raise ValueError(
                f"feature_input must be one of {FEATURE_INPUTS}, got {self.feature_input!r}"
            )
        pos = self.param("type_pos", blocks.normal_002, (1, k, self.width))  # (1, k, C)
        type_embedding = nn.Embed(
            k, self.width, embedding_init=blocks.normal_002, name="type_embed"
        )(jnp.arange(k))  # (k, C)
        # One scanned block per encoder layer: block l reads layers[l]. The carry keeps the dtype
        # the first `h + pos` gives (float32 beside a float32 position, also in bfloat16 compute).
        stack = blocks.scanned(
            blocks.FeatureBlock,
            depth=layers.shape[0],
            in_axes=(0, 0, nn.broadcast, nn.broadcast),
            remat=self.remat,
        )
        rates = jnp.asarray(self.drop_path_rates, jnp.float32)  # (depth,)
        h = h.astype(jnp.promote_types(h.dtype, pos.dtype))
        h, _ = stack(
            self.num_heads,
            self.mlp_ratio,
            self.stop_gradient,
            blocks.normal_002,
            self.dtype,
            deterministic,
            name="blocks",
        )(h, layers, rates, pos, type_embedding)
        h = blocks.layer_norm("norm", dtype=self.dtype)(h)  # (B, k, C)
        outs = [
            nn.Dense(
                self.teacher_dim, kernel_init=projection_init, dtype=self.dtype, name=f"{name}_proj"
            )(h[:, i])
            for i, name in enumerate(self.feature_types)
        ]
        return jnp.stack(outs, axis=1).astype(jnp.float32)  # (B, k, D)
