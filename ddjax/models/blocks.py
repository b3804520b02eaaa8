"""Transformer building blocks: attention, MLP, drop path, the DiT timestep embedder, AdaLN-Zero
blocks.

Conventions from ReCon/PyTorch that Flax does not share by default (spec trap 4): LayerNorm eps 1e-5
for ordinary LayerNorms, exact (erf) GELU. AdaLN-Zero blocks follow DiT: affine-free LayerNorm with
eps 1e-6, x * (1 + scale) + shift, gates on the residual branches, zero-initialised modulation.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]
Dtype = Any

# timm trunc_normal_(std=0.02) truncates at +-2 in absolute value, i.e. at 100 std: a plain normal.
normal_002 = nn.initializers.normal(0.02)
xavier_uniform = nn.initializers.xavier_uniform()
zeros = nn.initializers.zeros


def torch_linear_kernel_init() -> Initializer:
    """PyTorch's default nn.Linear weight init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_linear_bias_init(fan_in: int) -> Initializer:
    """PyTorch's default nn.Linear bias init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, as PyTorch's nn.GELU default (Flax's nn.gelu defaults to the tanh
    approximation)."""
    return nn.gelu(x, approximate=False)


def layer_norm(
    name: str | None = None, *, eps: float = 1e-5, affine: bool = True, dtype: Dtype = jnp.float32
):
    return nn.LayerNorm(epsilon=eps, use_scale=affine, use_bias=affine, dtype=dtype, name=name)


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    """DiT modulation. x (B, T, C); shift, scale (B, C) or (T, C) broadcastable after adding the T
    axis."""
    return x * (1 + scale) + shift


class DropPath(nn.Module):
    """Stochastic depth per sample (timm DropPath): drop the branch with prob `rate`, scale
    survivors.

    `rate` is a Python float, or a traced f32[] inside a scanned stack (each layer's own rate).
    """

    rate: float | jax.Array

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool) -> jax.Array:
        if deterministic or (isinstance(self.rate, (int, float)) and self.rate == 0.0):
            return x
        keep = 1.0 - self.rate
        mask = jax.random.bernoulli(
            self.make_rng("drop_path"), keep, (x.shape[0],) + (1,) * (x.ndim - 1)
        )
        return jnp.where(mask, x / keep, 0.0).astype(x.dtype)


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear."""

    hidden: int
    kernel_init: Initializer = normal_002
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        out = x.shape[-1]
        x = nn.Dense(self.hidden, kernel_init=self.kernel_init, dtype=self.dtype, name="fc1")(x)
        return nn.Dense(out, kernel_init=self.kernel_init, dtype=self.dtype, name="fc2")(gelu(x))


def attend(q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
    """q (B, Tq, H, D), k/v (B, Tk, H, D) -> (B, Tq, H, D); softmax in float32."""
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) * scale  # (B, H, Tq, Tk)
    weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v)


class SelfAttention(nn.Module):
    """Multi-head self-attention: qkv Linear without bias, output Linear with bias (ReCon's
    `Attention`)."""

    num_heads: int
    kernel_init: Initializer = normal_002
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, c = x.shape
        qkv = nn.Dense(
            3 * c, use_bias=False, kernel_init=self.kernel_init, dtype=self.dtype, name="qkv"
        )(x)
        # (B, T, 3, H, D): [q; k; v]
        qkv = qkv.reshape(b, t, 3, self.num_heads, c // self.num_heads)
        out = attend(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]).reshape(b, t, c)  # (B, T, C)
        return nn.Dense(c, kernel_init=self.kernel_init, dtype=self.dtype, name="proj")(out)


class CrossAttention(nn.Module):
    """Queries attend to a context: q Linear (no bias), kv Linear (no bias, [k; v]),
    output Linear."""

    num_heads: int
    kernel_init: Initializer = normal_002
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, context: jax.Array) -> jax.Array:
        b, tq, c = x.shape
        tk = context.shape[1]
        h, d = self.num_heads, c // self.num_heads
        q = nn.Dense(c, use_bias=False, kernel_init=self.kernel_init, dtype=self.dtype, name="q")(x)
        kv = nn.Dense(
            2 * c, use_bias=False, kernel_init=self.kernel_init, dtype=self.dtype, name="kv"
        )(context)
        kv = kv.reshape(b, tk, 2, h, d)  # (B, Tk, 2, H, D)
        out = attend(q.reshape(b, tq, h, d), kv[:, :, 0], kv[:, :, 1]).reshape(b, tq, c)
        return nn.Dense(c, kernel_init=self.kernel_init, dtype=self.dtype, name="proj")(out)


class TimestepEmbedder(nn.Module):
    """DiT's timestep embedder: sinusoidal features of t -> Linear -> SiLU -> Linear. t int[B] ->
    (B, C)."""

    width: int
    frequency_dim: int = 256
    max_period: float = 10_000.0
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        half = self.frequency_dim // 2
        # (half,)
        freqs = jnp.exp(-math.log(self.max_period) * jnp.arange(half, dtype=jnp.float32) / half)
        args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]  # (B, half)
        emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)  # (B, frequency_dim)
        emb = nn.Dense(self.width, kernel_init=normal_002, dtype=self.dtype, name="fc1")(emb)
        return nn.Dense(self.width, kernel_init=normal_002, dtype=self.dtype, name="fc2")(
            nn.silu(emb)
        )


def scanned(
    block: type[nn.Module], *, depth: int, in_axes: tuple, remat: bool = False
) -> type[nn.Module]:
    """`block` as `depth` layers run by one `nn.scan`: the layer is traced and compiled once,
    whatever the depth (an unrolled stack's program grows with it). Parameters are stacked on a
    leading axis of size `depth` (the module's name, e.g. `encoder/blocks/attn/qkv/kernel`
    f32[depth, C, 3C]); every layer gets its own init and drop-path keys. The block maps (carry,
    *args) -> (carry, per-layer output); `in_axes` says for each arg whether it is sliced per layer
    (0) or the same for all (`nn.broadcast`). `remat` recomputes each layer's activations in the
    backward pass instead of keeping them (less memory, about one more forward pass of compute)."""
    if remat:
        # prevent_cse is unneeded inside scan (Flax docs)
        block = nn.remat(block, prevent_cse=False)
    return nn.scan(
        block,
        variable_axes={"params": 0},
        split_rngs={"params": True, "drop_path": True},
        in_axes=in_axes,
        length=depth,
    )


class AdaLNZeroBlock(nn.Module):
    """A DiT block: one layer of the PointDAE encoder and decoder stacks (spec section 6.2).

    x <- x + pos                              (the position re-added at every block's input, spec
      1.3)
    x <- x + DP(gate_msa * Attn(modulate(LN(x), shift_msa, scale_msa)))
    x <- x + DP(gate_mlp * MLP(modulate(LN(x), shift_mlp, scale_mlp)))
    with (shift, scale, gate) x 2 = Linear(SiLU(c)), zero-initialised: the block adds nothing at
    init. Scan-shaped: (x, drop_rate, pos, c) -> (output, the block's input x + pos).
    """

    num_heads: int
    mlp_ratio: float = 4.0
    kernel_init: Initializer = normal_002
    dtype: Dtype = jnp.float32
    deterministic: bool = True

    @nn.compact
    def __call__(
        self, x: jax.Array, drop_rate: float | jax.Array, pos: jax.Array, c: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """x, pos (B, T, C); drop_rate f32[]; c (B, C) -> ((B, T, C), (B, T, C))."""
        width = x.shape[-1]
        x = x + pos
        block_input = x
        mod = nn.Dense(6 * width, kernel_init=zeros, dtype=self.dtype, name="adaLN_modulation")(
            nn.silu(c)
        )
        mod = mod[:, None, :]  # (B, 1, 6C): one modulation per sample, shared by its tokens
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = jnp.split(mod, 6, axis=-1)
        h = modulate(
            layer_norm("norm1", eps=1e-6, affine=False, dtype=self.dtype)(x), shift_msa, scale_msa
        )
        h = SelfAttention(self.num_heads, self.kernel_init, self.dtype, name="attn")(h)
        x = x + DropPath(drop_rate)(gate_msa * h, self.deterministic)
        h = modulate(
            layer_norm("norm2", eps=1e-6, affine=False, dtype=self.dtype)(x), shift_mlp, scale_mlp
        )
        h = Mlp(int(width * self.mlp_ratio), self.kernel_init, self.dtype, name="mlp")(h)
        return x + DropPath(drop_rate)(gate_mlp * h, self.deterministic), block_input


class FeatureBlock(nn.Module):
    """A feature-denoising block (spec section 6.2): cross-attention to point tokens, AdaLN-Zero
    FFN.

    h <- h + pos                                             (learned per-type position)
    h <- h + DP(CrossAttn(LN(h), LN(stopgrad(points))))     (not gated)
    h <- h + DP(gate * MLP(modulate(LN'(h), shift, scale)))  (gate zero at init)
    (shift, scale, gate) = Linear(SiLU(type_embedding)), one per feature type; LN' is
    affine-free. Feature tokens never attend to each other, so the types and the noise paths
    stay independent. Scan-shaped: (h, points, drop_rate, pos, type_embedding) -> (output,
    None).
    """

    num_heads: int
    mlp_ratio: float = 4.0
    stop_gradient: bool = True
    kernel_init: Initializer = normal_002
    dtype: Dtype = jnp.float32
    deterministic: bool = True

    @nn.compact
    def __call__(
        self,
        h: jax.Array,
        points: jax.Array,
        drop_rate: float | jax.Array,
        pos: jax.Array,
        type_embedding: jax.Array,
    ) -> tuple[jax.Array, None]:
        """h (B, k, C) feature tokens; points (B, G, C) encoder tokens; drop_rate f32[]; pos (1, k,
        C); type_embedding (k, C)."""
        width = h.shape[-1]
        h = h + pos
        if self.stop_gradient and not self.deterministic:
            # A training rule (the feature loss must not train PointDAE). In evaluation the branch
            # is an ordinary function of the input, so gradients w.r.t. the input points (attacks)
            # pass through.
            points = jax.lax.stop_gradient(points)
        q = layer_norm("norm_q", dtype=self.dtype)(h)
        kv = layer_norm("norm_kv", dtype=self.dtype)(points)
        attn = CrossAttention(self.num_heads, self.kernel_init, self.dtype, name="cross_attn")(
            q, kv
        )
        h = h + DropPath(drop_rate)(attn, self.deterministic)
        mod = nn.Dense(3 * width, kernel_init=zeros, dtype=self.dtype, name="adaLN_modulation")(
            nn.silu(type_embedding)
        )  # (k, 3C)
        shift, scale, gate = jnp.split(mod, 3, axis=-1)  # each (k, C), broadcast over the batch
        m = modulate(layer_norm("norm2", eps=1e-6, affine=False, dtype=self.dtype)(h), shift, scale)
        m = Mlp(int(width * self.mlp_ratio), self.kernel_init, self.dtype, name="mlp")(m)
        return h + DropPath(drop_rate)(gate * m, self.deterministic), None


class PreNormBlock(nn.Module):
    """A standard pre-norm ViT block (Point-BERT's and ULIP's `Block`; timm's without qkv bias):

    x <- x + Attn(LN1(x)); x <- x + MLP(LN2(x)), LayerNorm eps 1e-5. Drop path is the identity in
    eval.
    """

    num_heads: int
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    kernel_init: Initializer = normal_002
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        width = x.shape[-1]
        h = SelfAttention(self.num_heads, self.kernel_init, self.dtype, name="attn")(
            layer_norm("norm1", dtype=self.dtype)(x)
        )
        x = x + DropPath(self.drop_path)(h, deterministic)
        h = Mlp(int(width * self.mlp_ratio), self.kernel_init, self.dtype, name="mlp")(
            layer_norm("norm2", dtype=self.dtype)(x)
        )
        return x + DropPath(self.drop_path)(h, deterministic)
