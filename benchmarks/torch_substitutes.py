"""Plain-torch stand-ins for what ReCon's code imports but a CPU machine cannot run, used only by
`benchmarks/peers_recon.py` (run by a torch interpreter; nothing here imports jax or ddjax).

- `pointnet2_ops.pointnet2_utils` (CUDA): `furthest_point_sample` and `gather_operation`, the same
  greedy FPS from the first point.
- `chamfer` (the CUDA extension behind ReCon's `extensions/chamfer_dist`): `forward` and `backward`
  with the extension's signature, so ReCon's own `ChamferFunction` and `ChamferDistanceL2` run.
- `timm.models.layers` (timm pulls torchvision, which does not install beside a CPU torch):
  `DropPath` and `trunc_normal_`, as timm defines them.
- `models.CrossModal` (the frozen CLIP/ViT teachers, downloaded weights): towers that return the
  cached teacher features they are given, with the real towers' output widths.

`install(device)` puts each into `sys.modules` where the real module is missing or cannot run on the
device, and returns the names it substituted (the teachers always: the benchmark measures the step
against cached teacher features).
"""

from __future__ import annotations

import importlib
import sys
import types

import torch
from torch import nn

# output widths of the frozen towers ReCon's configs name (CLIP's projection; timm's ViT width)
CLIP_WIDTHS = {"RN50": 1024, "ViT-B/32": 512, "ViT-B/16": 512, "ViT-L/14": 768}
TIMM_WIDTH = 768


def furthest_point_sample(xyz: torch.Tensor, npoint: int) -> torch.Tensor:
    """int32[B, npoint]: greedy farthest point sampling from point 0, as pointnet2_ops does."""
    b, n, _ = xyz.shape
    idx = torch.zeros(b, npoint, dtype=torch.long, device=xyz.device)
    dist = torch.full((b, n), float("inf"), device=xyz.device)
    rows = torch.arange(b, device=xyz.device)
    last = torch.zeros(b, dtype=torch.long, device=xyz.device)
    for i in range(1, npoint):
        d = ((xyz - xyz[rows, last][:, None]) ** 2).sum(-1)  # (B, N)
        dist = torch.minimum(dist, d)
        last = dist.argmax(-1)
        idx[:, i] = last
    return idx.int()


def gather_operation(features: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """features f32[B, C, N], idx int[B, M] -> f32[B, C, M]."""
    index = idx.long()[:, None, :].expand(-1, features.shape[1], -1)
    return torch.gather(features, 2, index)


def chamfer_forward(xyz1: torch.Tensor, xyz2: torch.Tensor):
    """(dist1 f32[B, N], dist2 f32[B, M], idx1 int32[B, N], idx2 int32[B, M]): squared distance of
    each point to its nearest neighbour in the other cloud, and that neighbour's index."""
    d = torch.cdist(xyz1, xyz2) ** 2  # (B, N, M)
    dist1, idx1 = d.min(2)
    dist2, idx2 = d.min(1)
    return dist1, dist2, idx1.int(), idx2.int()


def chamfer_backward(xyz1, xyz2, idx1, idx2, grad_dist1, grad_dist2):
    """The extension's gradients of (dist1, dist2) with respect to (xyz1, xyz2)."""
    near1 = torch.gather(xyz2, 1, idx1.long()[..., None].expand(-1, -1, 3))  # (B, N, 3)
    near2 = torch.gather(xyz1, 1, idx2.long()[..., None].expand(-1, -1, 3))  # (B, M, 3)
    g1 = 2 * (xyz1 - near1) * grad_dist1[..., None]
    g2 = 2 * (xyz2 - near2) * grad_dist2[..., None]
    grad_xyz1 = g1.scatter_add(1, idx2.long()[..., None].expand(-1, -1, 3), -g2)
    grad_xyz2 = g2.scatter_add(1, idx1.long()[..., None].expand(-1, -1, 3), -g1)
    return grad_xyz1, grad_xyz2


class DropPath(nn.Module):
    """Stochastic depth per sample, as timm's DropPath."""

    def __init__(self, drop_prob=None):
        super().__init__()
        self.drop_prob = drop_prob or 0.0

    def forward(self, x):
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


class CachedVisionTower(nn.Module):
    """Stands in for ReCon's `VisionTransformer` teacher: returns the cached image features."""

    def __init__(self, config):
        super().__init__()
        name = config.img_encoder
        self.output_dim = CLIP_WIDTHS.get(name, TIMM_WIDTH)
        self.embed_dim = self.output_dim

    def forward(self, features):
        return features


class CachedTextTower(nn.Module):
    """Stands in for ReCon's `TextTransformer` teacher: returns the cached text features."""

    def __init__(self, config):
        super().__init__()
        self.embed_dim = CLIP_WIDTHS.get(config.text_encoder, 512)

    def forward(self, features):
        return features


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except Exception:  # a missing or unbuilt extension raises ImportError or OSError
        return False
    return True


def install(device: str) -> list[str]:
    """Substitutes what cannot run here (module docstring); returns the names substituted."""
    done = []
    if device != "cuda" or not _importable("pointnet2_ops.pointnet2_utils"):
        utils = _module(
            "pointnet2_ops.pointnet2_utils",
            furthest_point_sample=furthest_point_sample,
            gather_operation=gather_operation,
        )
        sys.modules["pointnet2_ops"] = _module("pointnet2_ops", pointnet2_utils=utils)
        sys.modules["pointnet2_ops.pointnet2_utils"] = utils
        done.append("pointnet2_ops")
    if device != "cuda" or not _importable("chamfer"):
        sys.modules["chamfer"] = _module(
            "chamfer", forward=chamfer_forward, backward=chamfer_backward
        )
        done.append("chamfer")
    if not _importable("timm.models.layers"):
        layers = _module("timm.models.layers", DropPath=DropPath, trunc_normal_=trunc_normal_)
        models = _module("timm.models", layers=layers)
        sys.modules.update(
            {
                "timm": _module("timm", models=models),
                "timm.models": models,
                "timm.models.layers": layers,
            }
        )
        done.append("timm.models.layers")
    sys.modules["models.CrossModal"] = _module(
        "models.CrossModal", VisionTransformer=CachedVisionTower, TextTransformer=CachedTextTower
    )
    done.append("models.CrossModal (cached teacher features)")
    return done


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the frozen teachers are not part of the model here)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
