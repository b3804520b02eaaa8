"""PointDAE: the point denoising autoencoder's encoder and decoder stacks (spec section 6).

Each stack is one scanned AdaLN-Zero layer (`blocks.scanned`): parameters `encoder/blocks/...` and
`decoder/blocks/...` carry a leading layer axis, and the compiled program does not grow with the
depth.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from ddjax.models import blocks


class PointDAEEncoder(nn.Module):
    """`depth` AdaLN-Zero blocks on the timestep embedding, position re-added before every block.

    Returns the final-LayerNorm tokens and the tokens entering each block l (x_l + pos), stacked:
    the keys and values of the feature branch's block l.
    """

    depth: int
    num_heads: int
    mlp_ratio: float
    drop_path_rates: Sequence[float]
    dtype: blocks.Dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(
        self, x: jax.Array, pos: jax.Array, c: jax.Array, deterministic: bool
    ) -> tuple[jax.Array, jax.Array]:
        """x, pos (B, G, C); c (B, C) -> (tokens (B, G, C), block inputs (depth, B, G, C))."""
        stack = blocks.scanned(
            blocks.AdaLNZeroBlock,
            depth=self.depth,
            in_axes=(0, nn.broadcast, nn.broadcast),
            remat=self.remat,
        )
        rates = jnp.asarray(self.drop_path_rates, jnp.float32)  # (depth,)
        x, layers = stack(
            self.num_heads,
            self.mlp_ratio,
            blocks.normal_002,
            self.dtype,
            deterministic,
            name="blocks",
        )(x, rates, pos, c)
        return blocks.layer_norm("norm", dtype=self.dtype)(x), layers


class PointDAEDecoder(nn.Module):
    """`depth` AdaLN-Zero blocks (Xavier-uniform linears, ReCon's decoder init), final LayerNorm,
    and the reconstruction head Linear C -> 3K with PyTorch's default init (not zero: spec trap 18).
    """

    depth: int
    num_heads: int
    mlp_ratio: float
    drop_path_rates: Sequence[float]
    group_size: int
    dtype: blocks.Dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(
        self, x: jax.Array, pos: jax.Array, c: jax.Array, deterministic: bool
    ) -> jax.Array:
        """x, pos (B, G, C); c (B, C) -> reconstructed groups (B, G, K, 3) in their
        center's frame."""
        b, g, width = x.shape
        stack = blocks.scanned(
            blocks.AdaLNZeroBlock,
            depth=self.depth,
            in_axes=(0, nn.broadcast, nn.broadcast),
            remat=self.remat,
        )
        rates = jnp.asarray(self.drop_path_rates, jnp.float32)  # (depth,)
        x, _ = stack(
            self.num_heads,
            self.mlp_ratio,
            blocks.xavier_uniform,
            self.dtype,
            deterministic,
            name="blocks",
        )(x, rates, pos, c)
        x = blocks.layer_norm("norm", dtype=self.dtype)(x)
        out = nn.Dense(
            3 * self.group_size,
            kernel_init=blocks.torch_linear_kernel_init(),
            bias_init=blocks.torch_linear_bias_init(width),
            dtype=self.dtype,
            name="reconstruction_head",
        )(x)  # (B, G, 3K)
        return out.reshape(b, g, self.group_size, 3).astype(jnp.float32)  # (B, G, K, 3)
