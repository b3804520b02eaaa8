"""Uni3D's point encoder (`models/point_encoder.py: PointcloudEncoder`, as `models/uni3d.py:
create_uni3d` builds it and `Uni3D.encode_pc` runs it; Table 2's Uni3D column): ReCon's grouping
and mini-PointNet on xyz+rgb (512 groups of 64), a bridge into the width of a timm EVA tower, the
EVA blocks (`timm/models/eva.py: EvaBlock`, timm 0.9.7) on the cls and group tokens, and a
projection of the normalised cls token into the 1024-wide EVA-CLIP text space.

Every size Uni3D publishes (`scripts/inference.sh`) is a row of `SIZES`, the block layout timm
builds for its EVA model. Submodule and parameter names mirror the PyTorch module's
(`point_encoder.visual.blocks.{i}` -> `point_encoder/visual/block{i}`), so
ddjax/peer_checkpoints.py maps Uni3D's released `model.pt` key by key. Deterministic.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ddjax.models import blocks, tokenizer

# size -> the timm EVA model Uni3D builds, its width, depth, heads, MLP hidden width, attention
# projections ('fused': one `qkv` with `q_bias` and `v_bias`; 'separate': `q_proj` (bias),
# `k_proj` (no bias), `v_proj` (bias)) and MLP ('glu': timm GluMlp, one `fc1` holding [gate ;
# value], SiLU gate; 'swiglu': timm SwiGLU, `fc1_g`, `fc1_x`, a LayerNorm `norm`, `fc2`; 'gelu':
# timm Mlp with exact GELU).
SIZES = {
    "tiny": dict(
        pc_model="eva02_tiny_patch14_224",
        width=192,
        depth=12,
        num_heads=3,
        mlp_hidden=512,
        attention="fused",
        mlp="glu",
    ),
    "small": dict(
        pc_model="eva02_small_patch14_224",
        width=384,
        depth=12,
        num_heads=6,
        mlp_hidden=1024,
        attention="fused",
        mlp="glu",
    ),
    "base": dict(
        pc_model="eva02_base_patch14_448",
        width=768,
        depth=12,
        num_heads=12,
        mlp_hidden=2048,
        attention="separate",
        mlp="swiglu",
    ),
    "large": dict(
        pc_model="eva02_large_patch14_448",
        width=1024,
        depth=24,
        num_heads=16,
        mlp_hidden=2730,
        attention="separate",
        mlp="swiglu",
    ),
    "giant": dict(
        pc_model="eva_giant_patch14_560",
        width=1408,
        depth=40,
        num_heads=16,
        mlp_hidden=6144,
        attention="fused",
        mlp="gelu",
    ),
}
EPS = 1e-6  # every LayerNorm of the EVA part (the mini-PointNet's BatchNorms keep 1e-5)


class EvaAttention(nn.Module):
    """timm's `EvaAttention` without RoPE (Uni3D calls its blocks with rope=None) or mask:
    softmax(q k^T / sqrt(d)) v per head, heads as contiguous column chunks, then `proj`."""

    num_heads: int
    attention: str  # 'fused' | 'separate' (see SIZES)
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, c = x.shape
        dense = lambda name, bias=True: nn.Dense(c, use_bias=bias, dtype=self.dtype, name=name)
        if self.attention == "fused":
            qkv = nn.Dense(3 * c, use_bias=False, dtype=self.dtype, name="qkv")(x)  # (B, T, 3C)
            q_bias = self.param("q_bias", nn.initializers.zeros, (c,))
            v_bias = self.param("v_bias", nn.initializers.zeros, (c,))
            # the k bias is a zero buffer in timm
            bias = jnp.concatenate([q_bias, jnp.zeros_like(q_bias), v_bias])  # (3C,)
            q, k, v = jnp.split(qkv + bias.astype(qkv.dtype), 3, axis=-1)  # each (B, T, C)
        else:
            q, k, v = dense("q_proj")(x), dense("k_proj", bias=False)(x), dense("v_proj")(x)
        heads = (b, t, self.num_heads, c // self.num_heads)  # (B, T, H, D)
        out = blocks.attend(q.reshape(heads), k.reshape(heads), v.reshape(heads))
        return dense("proj")(out.reshape(b, t, c))  # (B, T, C)


class EvaMlp(nn.Module):
    """The MLP of an EVA block (see SIZES): 'glu' fc2(silu(h[:H]) * h[H:]) with h = fc1(x) [.., 2H]
    (the first half gates); 'swiglu' fc2(norm(silu(fc1_g(x)) * fc1_x(x))); 'gelu'
    fc2(gelu(fc1(x)))."""

    hidden: int
    mlp: str
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        width, hidden = x.shape[-1], self.hidden
        dense = lambda n, name: nn.Dense(n, dtype=self.dtype, name=name)
        if self.mlp == "glu":
            h = dense(2 * hidden, "fc1")(x)  # (B, T, 2H)
            h = nn.silu(h[..., :hidden]) * h[..., hidden:]  # (B, T, H)
        elif self.mlp == "swiglu":
            h = nn.silu(dense(hidden, "fc1_g")(x)) * dense(hidden, "fc1_x")(x)  # (B, T, H)
            h = blocks.layer_norm("norm", eps=EPS, dtype=self.dtype)(h)
        else:
            h = blocks.gelu(dense(hidden, "fc1")(x))  # (B, T, H)
        return dense(width, "fc2")(h)


class EvaBlock(nn.Module):
    """timm's `EvaBlock` as Uni3D calls it (no RoPE, no layer scale, drop path identity in eval):
    x <- x + Attn(LN1(x)); x <- x + MLP(LN2(x)), LayerNorm eps 1e-6."""

    num_heads: int
    mlp_hidden: int
    attention: str
    mlp: str
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        ln = lambda name: blocks.layer_norm(name, eps=EPS, dtype=self.dtype)
        x = x + EvaAttention(self.num_heads, self.attention, self.dtype, name="attn")(
            ln("norm1")(x)
        )
        return x + EvaMlp(self.mlp_hidden, self.mlp, self.dtype, name="mlp")(ln("norm2")(x))


class EvaTower(nn.Module):
    """The EVA model's blocks and `fc_norm` (its image path, `norm` and `head` are unused by Uni3D):
    x f32[B, T, C] -> (block 0's output, the last block's output, fc_norm(x[:, 0]) f32[B, C])."""

    depth: int
    num_heads: int
    mlp_hidden: int
    attention: str
    mlp: str
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        first = x
        for i in range(self.depth):
            x = EvaBlock(
                self.num_heads,
                self.mlp_hidden,
                self.attention,
                self.mlp,
                self.dtype,
                name=f"block{i}",
            )(x)
            first = x if i == 0 else first
        cls = blocks.layer_norm("fc_norm", eps=EPS, dtype=self.dtype)(x[:, 0])  # (B, C)
        return first, x, cls


class PointcloudEncoder(nn.Module):
    """Uni3D's `PointcloudEncoder`: points f32[B, N, 6] -> the reference file's outputs (`center`,
    `fps_idx`, `knn_idx`, `encoder_tokens`, `block0_tokens`, `final_tokens` (no final norm: Uni3D
    normalises only the cls token), `pc_feat` = fc_norm(cls) f32[B, C], `pc_embed` =
    trans2embed(pc_feat) f32[B, D]). The position embedding is added once, before the blocks."""

    width: int
    depth: int
    num_heads: int
    mlp_hidden: int
    attention: str
    mlp: str
    encoder_dims: int = 512
    embed_dim: int = 1024
    num_groups: int = 512
    group_size: int = 64
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, points: jax.Array) -> dict:
        groups, out = tokenizer.peer_tokens(
            points, self.num_groups, self.group_size, self.encoder_dims, self.dtype
        )
        # (B, G, C)
        x = nn.Dense(self.width, dtype=self.dtype, name="encoder2trans")(out["encoder_tokens"])
        b, c = x.shape[0], self.width
        # (B, G, C)
        pos = tokenizer.PositionMlp(c, dtype=self.dtype, name="pos_embed")(groups.centers)
        x = jnp.concatenate([tokenizer.learned_token(self, "cls_token", b, c), x], axis=1)
        # (B, 1 + G, C), added once
        x = x + jnp.concatenate([tokenizer.learned_token(self, "cls_pos", b, c), pos], axis=1)
        tower = EvaTower(
            self.depth,
            self.num_heads,
            self.mlp_hidden,
            self.attention,
            self.mlp,
            self.dtype,
            name="visual",
        )
        out["block0_tokens"], out["final_tokens"], out["pc_feat"] = tower(x)
        # (B, D)
        out["pc_embed"] = nn.Dense(self.embed_dim, dtype=self.dtype, name="trans2embed")(
            out["pc_feat"]
        )
        return out


class Uni3D(nn.Module):
    """`Uni3D.encode_pc`: the module `point_encoder` on xyz+rgb clouds; xyz-only clouds get the
    constant `colour` (0.4, what Uni3D's ModelNet40 evaluation feeds). `pc_embed` is not
    normalised (Uni3D L2-normalises it before the cosine)."""

    width: int
    depth: int
    num_heads: int
    mlp_hidden: int
    attention: str
    mlp: str
    encoder_dims: int = 512
    embed_dim: int = 1024
    num_groups: int = 512
    group_size: int = 64
    colour: float = 0.4
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, points: jax.Array) -> dict:
        return PointcloudEncoder(
            self.width,
            self.depth,
            self.num_heads,
            self.mlp_hidden,
            self.attention,
            self.mlp,
            self.encoder_dims,
            self.embed_dim,
            self.num_groups,
            self.group_size,
            self.dtype,
            name="point_encoder",
        )(tokenizer.with_colour(points, self.colour))
