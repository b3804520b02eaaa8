"""ULIP's Point-BERT point encoder (`models/pointbert/point_encoder.py: PointTransformer`) and its
projection into the text-embedding space (`ULIP_WITH_IMAGE.pc_projection`, `encode_pc`), as ULIP
builds it for zero-shot classification (Table 2's ULIP column); with `colour` set, ULIP-2's coloured
variant (`PointTransformer_Colored`, `ULIP2_WITH_OPENCLIP.pc_projection`: 18 blocks, xyz+rgb input,
a projection into OpenCLIP ViT-bigG-14's 1280-wide space; Table 2's ULIP-2 column).

Submodule and parameter names mirror the PyTorch module's (`point_encoder.*`, `pc_projection`), so
ddjax/peer_checkpoints.py maps a released checkpoint key by key. Deterministic: no noise paths.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ddjax.models import blocks, tokenizer


class PointBert(nn.Module):
    """Point-BERT's `PointTransformer` without a head: points f32[B, N, C] (xyz, or xyz+rgb) ->
    dict with `center`, `fps_idx`, `knn_idx`, `encoder_tokens` (mini-PointNet, before
    `reduce_dim`), `block0_tokens`, `final_tokens` and `pc_feat` = [cls ; max over the group tokens]
    f32[B, 2C], both after the final LayerNorm."""

    width: int = 384
    depth: int = 12
    num_heads: int = 6
    encoder_dims: int = 256
    num_groups: int = 512
    group_size: int = 32
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, points: jax.Array) -> dict:
        groups, out = tokenizer.peer_tokens(
            points, self.num_groups, self.group_size, self.encoder_dims, self.dtype
        )
        # (B, G, C)
        x = nn.Dense(self.width, dtype=self.dtype, name="reduce_dim")(out["encoder_tokens"])
        b, c = x.shape[0], self.width
        # (B, G, C)
        pos = tokenizer.PositionMlp(c, dtype=self.dtype, name="pos_embed")(groups.centers)
        x = jnp.concatenate([tokenizer.learned_token(self, "cls_token", b, c), x], axis=1)
        # (B, 1 + G, C)
        pos = jnp.concatenate([tokenizer.learned_token(self, "cls_pos", b, c), pos], axis=1)
        for i in range(self.depth):
            x = blocks.PreNormBlock(self.num_heads, dtype=self.dtype, name=f"block{i}")(x + pos)
            if i == 0:
                out["block0_tokens"] = x
        x = blocks.layer_norm("norm", dtype=self.dtype)(x)
        out["final_tokens"] = x
        out["pc_feat"] = jnp.concatenate([x[:, 0], jnp.max(x[:, 1:], axis=1)], axis=-1)  # (B, 2C)
        return out


class UlipPointBert(nn.Module):
    """`point_encoder` (Point-BERT) and `pc_projection` f32[2C, D] (stored [in, out]: pc_embed =
    pc_feat @ P). ULIP L2-normalises `pc_embed` before the cosine; the returned value is not
    normalised. `colour`: ULIP-2's constant rgb for xyz-only clouds (0.4; None: ULIP-1, xyz
    only)."""

    width: int = 384
    depth: int = 12
    num_heads: int = 6
    encoder_dims: int = 256
    embed_dim: int = 512
    num_groups: int = 512
    group_size: int = 32
    colour: float | None = None
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, points: jax.Array) -> dict:
        out = PointBert(
            self.width,
            self.depth,
            self.num_heads,
            self.encoder_dims,
            self.num_groups,
            self.group_size,
            self.dtype,
            name="point_encoder",
        )(tokenizer.with_colour(points, self.colour))
        projection = self.param(
            "pc_projection",
            nn.initializers.normal(self.embed_dim**-0.5),
            (2 * self.width, self.embed_dim),
        )
        out["pc_embed"] = out["pc_feat"] @ projection.astype(self.dtype)  # (B, D)
        return out
