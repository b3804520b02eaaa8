"""Point tokenizer: ReCon's mini-PointNet patch embedding and the center position MLP (spec 1.2,
1.3), and the token prelude the peer ports share (`peer_tokens`, `learned_token`, `with_colour`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from ddjax import pointcloud
from ddjax.models import blocks


class ConcatDense(nn.Module):
    """Dense([broadcast(g) ; f]) without building the concatenation: g @ W[:Dg] + f @ W[Dg:] + b.

    The same parameters as `nn.Dense` on the concatenation (kernel (Dg + Df, out), bias (out,)), so
    ReCon's 1x1 conv weights convert unchanged; the g half runs once per group instead of once per
    point.
    """

    features: int
    kernel_init: blocks.Initializer = blocks.normal_002
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, g: jax.Array, f: jax.Array) -> jax.Array:
        """g (..., 1, Dg) per group, f (..., K, Df) per point -> (..., K, features)."""
        dg, df = g.shape[-1], f.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (dg + df, self.features))
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        kernel, g, f = kernel.astype(self.dtype), g.astype(self.dtype), f.astype(self.dtype)
        return g @ kernel[:dg] + f @ kernel[dg:] + bias.astype(self.dtype)


# the mini-PointNet's hidden widths: Point-MAE's, which every peer and the paper use
PATCH_WIDTHS = (128, 256, 512)


class MiniPointNet(nn.Module):
    """Embeds each group of K points into one token, independently of K (max-pools over the points).

    per point: Linear 3->128, BN, ReLU, Linear 128->256 = f; g = max_K f; [g ; f] (global first) ->
    Linear 512->512, BN, ReLU, Linear 512->C; token = max_K. BatchNorm statistics over all B*G*K
    points (PyTorch BatchNorm1d on (B*G, C, K)), momentum 0.1 (Flax 0.9), eps 1e-5; running stats in
    eval. `hidden` = PATCH_WIDTHS = (128, 256, 512); a smaller triple (h1, h2, h3) makes Linear
    3->h1, h1->h2, 2*h2->h3, h3->C (the smoke model's).
    """

    width: int
    hidden: tuple[int, int, int] = PATCH_WIDTHS
    kernel_init: blocks.Initializer = blocks.normal_002
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, neighborhoods: jax.Array, train: bool) -> jax.Array:
        """neighborhoods f32[B, G, K, 3] (centred groups) -> tokens f32[B, G, C]."""
        dense = lambda n, name: nn.Dense(
            n, kernel_init=self.kernel_init, dtype=self.dtype, name=name
        )
        bn = lambda name: nn.BatchNorm(
            use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype, name=name
        )
        h1, h2, h3 = self.hidden
        f = dense(h1, "conv1a")(neighborhoods)  # (B, G, K, h1)
        f = dense(h2, "conv1b")(nn.relu(bn("bn1")(f)))  # (B, G, K, h2)
        g = jnp.max(f, axis=2, keepdims=True)  # (B, G, 1, h2)
        # Dense([g ; f]): (B, G, K, h3)
        f = ConcatDense(h3, self.kernel_init, self.dtype, name="conv2a")(g, f)
        f = dense(self.width, "conv2b")(nn.relu(bn("bn2")(f)))  # (B, G, K, C)
        return jnp.max(f, axis=2)  # (B, G, C)


class PositionMlp(nn.Module):
    """Center position embedding: Linear 3->128, exact GELU, Linear 128->C. centers (B, G, 3) -> (B,
    G, C)."""

    width: int
    kernel_init: blocks.Initializer = blocks.normal_002
    bias_init_fan_in: bool = False  # True: PyTorch-default biases (ReCon's decoder_pos_embed)
    dtype: blocks.Dtype = jnp.float32

    @nn.compact
    def __call__(self, centers: jax.Array) -> jax.Array:
        bias = (
            (lambda fan_in: blocks.torch_linear_bias_init(fan_in))
            if self.bias_init_fan_in
            else (lambda fan_in: nn.initializers.zeros)
        )
        x = nn.Dense(
            128, kernel_init=self.kernel_init, bias_init=bias(3), dtype=self.dtype, name="fc1"
        )(centers)
        return nn.Dense(
            self.width,
            kernel_init=self.kernel_init,
            bias_init=bias(128),
            dtype=self.dtype,
            name="fc2",
        )(blocks.gelu(x))


def with_colour(points: jax.Array, colour: float | None) -> jax.Array:
    """xyz clouds f32[B, N, 3] get a constant colour: f32[B, N, 6] (x, y, z, c, c, c), as ULIP-2's
    and Uni3D's ModelNet40 evaluations feed rgb = 0.4; clouds that have their channels (or models
    without colour: `colour` None) are returned as they are."""
    if colour is None or points.shape[-1] != 3:
        return points
    grey = jnp.full(points.shape, colour, points.dtype)  # (B, N, 3)
    return jnp.concatenate([points, grey], axis=-1)  # (B, N, 6)


def peer_tokens(
    points: jax.Array, num_groups: int, group_size: int, encoder_dims: int, dtype: blocks.Dtype
) -> tuple[pointcloud.Groups, dict]:
    """The token prelude of ReCon, Point-BERT (ULIP, ULIP-2) and Uni3D, called inside a port's
    compact `__call__` (the mini-PointNet becomes its submodule `encoder`): FPS + kNN grouping on
    xyz, then the mini-PointNet in eval mode. points f32[B, N, C] -> (Groups, {'center',
    'fps_idx', 'knn_idx', 'encoder_tokens' f32[B, G, encoder_dims]}), named like the peers'
    reference files."""
    groups, fps_idx, knn_idx = pointcloud.group_indexed(points, num_groups, group_size)
    tokens = MiniPointNet(encoder_dims, dtype=dtype, name="encoder")(
        groups.neighborhoods, train=False
    )  # (B, G, E)
    out = {
        "center": groups.centers,
        "fps_idx": fps_idx,
        "knn_idx": knn_idx,
        "encoder_tokens": tokens,
    }
    return groups, out


def learned_token(module: nn.Module, name: str, batch: int, width: int) -> jax.Array:
    """A learned token `name` f32[1, 1, C] of `module` (zeros at init: the peers' cls tokens),
    broadcast to f32[batch, 1, C]."""
    token = module.param(name, nn.initializers.zeros, (1, 1, width))
    return jnp.broadcast_to(token, (batch, 1, width))
