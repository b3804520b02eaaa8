"""ReCon's zero-shot point encoder (`PointTransformerZeroShot`, type 'full'; spec sections 1 and 2),
so that ReCon can be evaluated and attacked under ddjax's protocol (Table 2's ReCon column).

Submodule and parameter names mirror the PyTorch module's, so `ddjax.convert` maps a released
checkpoint key by key. Deterministic: no noise paths (the jobs treat it as N = 1, t = 0).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ddjax.models import blocks, tokenizer

NUM_GLOBAL = 3  # cls, img, text tokens ahead of the point tokens


class ReconBlock(nn.Module):
    """ReCon's `Block(with_contrast=True)`: not pre-norm; the residual adds to the normalised
    streams.

    g = x[:, :3] (cls, img, text), v = x[:, 3:] (points):
    g = LN1c(g); v = LN1(v); g = g + CrossAttn(g -> v); v = v + Attn(v)
    g = LN2c(g); v = LN2(v); g = g + MLPc(g);           v = v + MLP(v)
    The global tokens attend only to the point tokens; the point tokens never see the global
    ones.
    """

    num_heads: int
    mlp_ratio: float = 4.0
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        hidden = int(x.shape[-1] * self.mlp_ratio)
        ln = lambda name: blocks.layer_norm(name, dtype=self.dtype)
        g, v = x[:, :NUM_GLOBAL], x[:, NUM_GLOBAL:]  # (B, 3, C), (B, G, C)
        g, v = ln("norm1_contrast")(g), ln("norm1")(v)
        g = g + blocks.CrossAttention(self.num_heads, dtype=self.dtype, name="attn_contrast")(g, v)
        v = v + blocks.SelfAttention(self.num_heads, dtype=self.dtype, name="attn")(v)
        g, v = ln("norm2_contrast")(g), ln("norm2")(v)
        g = g + blocks.Mlp(hidden, dtype=self.dtype, name="mlp_contrast")(g)
        v = v + blocks.Mlp(hidden, dtype=self.dtype, name="mlp")(v)
        return jnp.concatenate([g, v], axis=1)  # (B, 3 + G, C)


class ReconZeroShot(nn.Module):
    """points f32[B, N, 3] -> the reference files' outputs (`center`, `fps_idx`, `knn_idx`,
    `encoder_tokens`, `block0_tokens`, `final_tokens`, `img_feature`, `text_feature`); `feature` =
    ratio * text + image is the caller's (`ddjax.zeroshot.ensemble`)."""

    width: int = 384
    depth: int = 12
    num_heads: int = 6
    encoder_dims: int = 384
    image_dim: int = 512
    text_dim: int = 512
    num_groups: int = 64
    group_size: int = 32
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, points: jax.Array) -> dict:
        groups, out = tokenizer.peer_tokens(
            points, self.num_groups, self.group_size, self.encoder_dims, self.dtype
        )
        tokens = out["encoder_tokens"]  # (B, G, C)
        b, c = tokens.shape[0], self.width
        token = lambda name: tokenizer.learned_token(self, name, b, c)  # (B, 1, C)
        # (B, G, C)
        pos = tokenizer.PositionMlp(c, dtype=self.dtype, name="pos_embed")(groups.centers)
        x = jnp.concatenate(
            [token("cls_token"), token("img_token"), token("text_token"), tokens], axis=1
        )
        # (B, 3+G, C)
        pos = jnp.concatenate([token("cls_pos"), token("img_pos"), token("text_pos"), pos], axis=1)
        for i in range(self.depth):
            # pos re-added every block
            x = ReconBlock(self.num_heads, dtype=self.dtype, name=f"block{i}")(x + pos)
            if i == 0:
                out["block0_tokens"] = x
        x = blocks.layer_norm("norm", dtype=self.dtype)(x)
        out["final_tokens"] = x
        # (B, D)
        out["img_feature"] = nn.Dense(self.image_dim, dtype=self.dtype, name="img_proj")(x[:, 1])
        # (B, D)
        out["text_feature"] = nn.Dense(self.text_dim, dtype=self.dtype, name="text_proj")(x[:, 2])
        return out
