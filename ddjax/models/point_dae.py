"""PointDAE: the point denoising autoencoder's encoder and decoder stacks (spec section 6)."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ddjax.models import blocks


class PointDAEEncoder(nn.Module):
    """`depth` AdaLN-Zero blocks on the timestep embedding, position re-added before every block.

    Returns the final-LayerNorm tokens and, per block l, the tokens entering block l (x_l + pos): the keys
    and values of the feature branch's block l.
    """
    depth: int
    num_heads: int
    mlp_ratio: float
    drop_path_rates: Sequence[float]
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, pos: jax.Array, c: jax.Array,
                 deterministic: bool) -> tuple[jax.Array, list[jax.Array]]:
        """x, pos (B, G, C); c (B, C) -> (tokens (B, G, C), [block inputs (B, G, C)] * depth)."""
        layers = []
        for i in range(self.depth):
            x = x + pos
            layers.append(x)
            x = blocks.AdaLNZeroBlock(self.num_heads, self.mlp_ratio, self.drop_path_rates[i],
                                      blocks.normal_002, self.dtype, name=f"block{i:02d}")(x, c, deterministic)
        return blocks.layer_norm("norm", dtype=self.dtype)(x), layers


class PointDAEDecoder(nn.Module):
    """`depth` AdaLN-Zero blocks (Xavier-uniform linears, ReCon's decoder init), final LayerNorm, and the
    reconstruction head Linear C -> 3K with PyTorch's default init (not zero: spec trap 18)."""
    depth: int
    num_heads: int
    mlp_ratio: float
    drop_path_rates: Sequence[float]
    group_size: int
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, pos: jax.Array, c: jax.Array, deterministic: bool) -> jax.Array:
        """x, pos (B, G, C); c (B, C) -> reconstructed groups (B, G, K, 3) in their center's frame."""
        b, g, width = x.shape
        for i in range(self.depth):
            x = blocks.AdaLNZeroBlock(self.num_heads, self.mlp_ratio, self.drop_path_rates[i],
                                      blocks.xavier_uniform, self.dtype, name=f"block{i:02d}")(x + pos, c,
                                                                                               deterministic)
        x = blocks.layer_norm("norm", dtype=self.dtype)(x)
        out = nn.Dense(3 * self.group_size, kernel_init=blocks.torch_linear_kernel_init(),
                       bias_init=blocks.torch_linear_bias_init(width), dtype=self.dtype,
                       name="reconstruction_head")(x)  # (B, G, 3K)
        return out.reshape(b, g, self.group_size, 3).astype(jnp.float32)  # (B, G, K, 3)
