"""benchmarks/peers.py, the side-by-side harness with ReCon, on a tiny stand-in checkout written for
these tests (not ReCon's code: ReCon's module layout, constructor and forward signatures, and the
CUDA-only modules it imports), and its plain-torch substitutes against numpy references. The torch
side runs in `make torch-env`'s interpreter (.venv-torch, or $DDJAX_TORCH_PYTHON)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.path.join(ROOT, "benchmarks", "peers.py")

STAND_IN = {
    "models/__init__.py": """
        import models.ReCon
        import models.transformer
    """,
    "models/ReCon.py": """
        import torch
        from torch import nn

        from extensions.chamfer_dist import ChamferDistanceL2
        from models.CrossModal import TextTransformer, VisionTransformer
        from pointnet2_ops import pointnet2_utils
        from timm.models.layers import DropPath, trunc_normal_


        class ReCon(nn.Module):
            # a stand-in for ddjax's tests: FPS centers, a linear embedding, Chamfer-L2 and
            # Smooth-L1 to the (cached) teachers
            def __init__(self, config):
                super().__init__()
                width = config.transformer_config.trans_dim
                self.num_group = config.num_group
                self.embed = nn.Linear(3, width)
                self.drop = DropPath(0.1)
                self.head = nn.Linear(width, 3)
                self.img_encoder = VisionTransformer(config)
                self.text_encoder = TextTransformer(config)
                self.img_proj = nn.Linear(width, self.img_encoder.output_dim)
                self.text_proj = nn.Linear(width, self.text_encoder.embed_dim)
                trunc_normal_(self.embed.weight, std=0.02)
                self.loss_func = ChamferDistanceL2().cuda()

            def forward(self, pts, img, text):
                idx = pointnet2_utils.furthest_point_sample(pts, self.num_group)
                centers = pointnet2_utils.gather_operation(
                    pts.transpose(1, 2).contiguous(), idx
                ).transpose(1, 2)
                h = self.drop(self.embed(centers))
                pooled = h.max(1).values
                smooth = nn.functional.smooth_l1_loss
                return (
                    self.loss_func(self.head(h), centers)
                    + smooth(self.img_proj(pooled), self.img_encoder(img))
                    + smooth(self.text_proj(pooled), self.text_encoder(text))
                )
    """,
    "models/transformer.py": """
        import torch
        from torch import nn

        from models.CrossModal import TextTransformer, VisionTransformer
        from pointnet2_ops import pointnet2_utils


        class PointTransformerZeroShot(nn.Module):
            def __init__(self, config):
                super().__init__()
                self.num_group, self.ratio = config.num_group, config.ratio
                self.embed = nn.Linear(3, config.trans_dim)
                self.text_proj = nn.Linear(config.trans_dim, TextTransformer(config).embed_dim)
                self.img_proj = nn.Linear(config.trans_dim, VisionTransformer(config).output_dim)

            def forward(self, pts):
                idx = pointnet2_utils.furthest_point_sample(pts, self.num_group)
                centers = pointnet2_utils.gather_operation(
                    pts.transpose(1, 2).contiguous(), idx
                ).transpose(1, 2)
                h = self.embed(centers).max(1).values
                return self.ratio * self.text_proj(h) + self.img_proj(h)
    """,
    "extensions/chamfer_dist/__init__.py": """
        import torch

        import chamfer


        class ChamferFunction(torch.autograd.Function):
            @staticmethod
            def forward(ctx, xyz1, xyz2):
                dist1, dist2, idx1, idx2 = chamfer.forward(xyz1, xyz2)
                ctx.save_for_backward(xyz1, xyz2, idx1, idx2)
                return dist1, dist2

            @staticmethod
            def backward(ctx, grad_dist1, grad_dist2):
                xyz1, xyz2, idx1, idx2 = ctx.saved_tensors
                return chamfer.backward(xyz1, xyz2, idx1, idx2, grad_dist1, grad_dist2)


        class ChamferDistanceL2(torch.nn.Module):
            def forward(self, xyz1, xyz2):
                dist1, dist2 = ChamferFunction.apply(xyz1, xyz2)
                return torch.mean(dist1) + torch.mean(dist2)
    """,
    "cfgs/pretrain/base.yaml": """
        model : {
          NAME: ReCon, group_size: 8, num_group: 16, loss: cdl2,
          transformer_config: {mask_ratio: 0.6, trans_dim: 16},
          img_encoder: 'vit_base_patch16_224_in21k', text_encoder: 'ViT-B/32',
          self_contrastive: FALSE }
    """,
    "cfgs/zeroshot/modelnet40.yaml": """
        model : {
          NAME: PointTransformerZeroShot, trans_dim: 16, num_group: 16, group_size: 8,
          type: 'full', ratio: 0.25, img_encoder: 'ViT-B/32', text_encoder: 'ViT-B/32' }
    """,
}
# Linear(3, 16) + Linear(16, 3) + Linear(16, 768) (timm ViT teacher) + Linear(16, 512) (CLIP text)
STAND_IN_TRAIN_PARAMS = 64 + 51 + 16 * 768 + 768 + 16 * 512 + 512
# Linear(3, 16) + 2 x Linear(16, 512) (CLIP ViT-B/32 image and text)
STAND_IN_ZEROSHOT_PARAMS = 64 + 2 * (16 * 512 + 512)


@pytest.fixture(scope="module")
def torch_python():
    python = os.environ.get("DDJAX_TORCH_PYTHON") or os.path.join(
        ROOT, ".venv-torch", "bin", "python"
    )
    if not os.path.exists(python):
        pytest.skip(
            f"no torch interpreter at {python}: run `make torch-env` (requirements-torch.txt)"
        )
    return python


def write_stand_in(root) -> str:
    for name, text in STAND_IN.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return str(root)


def numpy_fps(points: np.ndarray, n: int) -> np.ndarray:
    """Brute-force greedy FPS from point 0 of one cloud (N, 3) -> (n,)."""
    chosen = [0]
    for _ in range(n - 1):
        d = ((points[:, None] - points[chosen][None]) ** 2).sum(-1).min(1)
        chosen.append(int(d.argmax()))
    return np.array(chosen)


def numpy_chamfer(x: np.ndarray, y: np.ndarray):
    """(loss, d loss/dx, d loss/dy) of mean_i min_j |x_i - y_j|^2 + mean_j min_i |x_i - y_j|^2."""
    d = ((x[:, None] - y[None]) ** 2).sum(-1)  # (N, M)
    nn1, nn2 = d.argmin(1), d.argmin(0)
    loss = d.min(1).mean() + d.min(0).mean()
    gx = 2 * (x - y[nn1]) / len(x)
    gy = 2 * (y - x[nn2]) / len(y)
    np.add.at(gy, nn1, -2 * (x - y[nn1]) / len(x))
    np.add.at(gx, nn2, -2 * (y - x[nn2]) / len(y))
    return loss, gx, gy


def test_substitutes_match_numpy(torch_python, tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 40, 3)).astype(np.float32)
    y = rng.normal(size=(2, 30, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, torch
        sys.path.insert(0, {os.path.join(ROOT, "benchmarks")!r})
        import torch_substitutes as ts
        ts.install("cpu")
        sys.path.insert(0, {write_stand_in(tmp_path / "recon")!r})
        from extensions.chamfer_dist import ChamferDistanceL2
        from pointnet2_ops import pointnet2_utils
        x = torch.tensor(np.load({str(tmp_path / "x.npy")!r}), requires_grad=True)
        y = torch.tensor(np.load({str(tmp_path / "y.npy")!r}), requires_grad=True)
        idx = pointnet2_utils.furthest_point_sample(x.detach(), 8)
        centers = pointnet2_utils.gather_operation(x.detach().transpose(1, 2).contiguous(), idx)
        loss = ChamferDistanceL2()(x[:1], y[:1])
        loss.backward()
        got = {{"idx": idx.tolist(), "centers": centers.tolist(), "loss": loss.item()}}
        print(json.dumps({{**got, "gx": x.grad[0].tolist(), "gy": y.grad[0].tolist()}}))
        """
    )
    out = subprocess.run([torch_python, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    for b in range(2):
        want = numpy_fps(x[b], 8)
        np.testing.assert_array_equal(got["idx"][b], want)
        np.testing.assert_allclose(np.array(got["centers"][b]).T, x[b][want], rtol=1e-6)
    loss, gx, gy = numpy_chamfer(x[0], y[0])
    np.testing.assert_allclose(got["loss"], loss, rtol=1e-5)
    np.testing.assert_allclose(got["gx"], gx, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got["gy"], gy, rtol=1e-4, atol=1e-6)


def test_harness_on_a_stand_in_checkout(torch_python, tmp_path):
    recon = write_stand_in(tmp_path / "recon")
    out = subprocess.run(
        [
            sys.executable,
            PEERS,
            "--recon-dir",
            recon,
            "--torch-python",
            torch_python,
            "--variant",
            "tiny",
            "--batch",
            "2",
            "--zeroshot-batch",
            "2",
            "--rounds",
            "2",
            "--repeats",
            "2",
            "--disturbed",
            "1000",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout)
    rows = {(r["what"], r["impl"]): r for r in result["rows"]}
    assert set(rows) == {
        ("train_step", "recon"),
        ("train_step", "ddjax"),
        ("zeroshot_n1", "recon"),
        ("zeroshot_n1", "ddjax"),
        ("zeroshot_n8_t0", "ddjax"),
        ("zeroshot_n8_t600", "ddjax"),
    }
    for r in result["rows"]:
        assert r["processes"] == 2 and r["dtype"] == "float32" and r["device"] == "cpu"
        assert 0 < r["min_s"] <= r["median_s"] <= r["max_s"] and r["peak_bytes"] > 2**20
    # on CPU ddjax's train step runs with remat (peers.py --remat=auto)
    assert result["machine"]["ddjax_remat"] is True and rows[("train_step", "ddjax")]["remat"]
    assert rows[("train_step", "recon")]["params"] == STAND_IN_TRAIN_PARAMS
    assert rows[("zeroshot_n1", "recon")]["params"] == STAND_IN_ZEROSHOT_PARAMS
    # the stand-in's zero-shot forward at batch 2: Linear(3, 16) on 2 x 16 centers, then two
    # Linear(16, 512) on 2 pooled tokens, 2 FLOPs per multiply-add
    assert rows[("zeroshot_n1", "recon")]["flops"] == 2 * (32 * 3 * 16 + 2 * 2 * 16 * 512)
    for r in result["rows"]:
        assert r["flops"] > 0
        assert r["achieved_flops_per_s"] == pytest.approx(r["flops"] / r["median_s"])
    ratio = result["ratios"]
    for what in ("train_step", "zeroshot_n1"):
        want = rows[(what, "ddjax")]["median_s"] / rows[(what, "recon")]["median_s"]
        assert ratio[what] == pytest.approx(want)
    peak = rows[("train_step", "ddjax")]["peak_bytes"] / rows[("train_step", "recon")]["peak_bytes"]
    assert ratio["train_peak_bytes"] == pytest.approx(peak)
    assert {"pointnet2_ops", "chamfer", "timm.models.layers"} <= set(
        result["machine"]["substituted"]
    )
    # the processes alternate: round 1 ReCon first, round 2 ddjax first
    order = [line.split()[4:6] for line in out.stderr.splitlines() if "] round " in line]
    assert order[0] == ["recon", "train_step"] and order[1] == ["ddjax", "train_step"]
    half = len(order) // 2
    assert order[half] == ["ddjax", "train_step"] and order[half + 1] == ["recon", "train_step"]


def test_refusals_are_one_line(tmp_path):
    run = lambda *args: subprocess.run(
        [sys.executable, PEERS, *args], capture_output=True, text=True, timeout=300
    )
    out = run("--recon-dir", str(tmp_path), "--dtypes", "float16")
    assert out.returncode == 2 and "--dtypes float16" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1
    out = run("--recon-dir", str(tmp_path / "nowhere"))
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert "no such folder" in out.stderr and not out.stdout
    (tmp_path / "models").mkdir()
    out = run("--recon-dir", str(tmp_path))
    assert out.returncode == 2 and "models/ReCon.py" in out.stderr, out.stderr
    assert out.stderr.count("\n") == 1
    recon = write_stand_in(tmp_path / "recon")
    if importlib.util.find_spec("torch") is None:  # ddjax's environment has no torch
        out = run("--recon-dir", recon, "--torch-python", sys.executable)
        assert out.returncode == 2 and "requirements-torch.txt" in out.stderr, out.stderr
        assert out.stderr.count("\n") == 1
    out = run("--recon-dir", recon, "--torch-python", str(tmp_path / "no-python"))
    assert out.returncode == 2 and "cannot run it" in out.stderr, out.stderr


def _peers_module():
    spec = importlib.util.spec_from_file_location("peers_benchmark", PEERS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_plan_and_ratios():
    # The GPU half, dry: both dtypes in the plan, each alternating; the bfloat16 ratio against
    # ReCon's better dtype, the float32 ratios from float32 rows only.
    peers = _peers_module()
    order = peers.plan(("float32", "bfloat16"), 2)
    assert len(order) == 2 * 2 * (2 * 2 + 2)
    assert order[:2] == [
        (0, "train_step", "recon", "float32"),
        (0, "train_step", "ddjax", "float32"),
    ]
    assert (0, "train_step", "recon", "bfloat16") in order[6:8]
    assert order[12:14] == [
        (1, "train_step", "ddjax", "float32"),
        (1, "train_step", "recon", "float32"),
    ]
    row = lambda what, impl, dtype, s, peak=1: {
        "what": what,
        "impl": impl,
        "dtype": dtype,
        "median_s": s,
        "peak_bytes": peak,
    }
    rows = [
        row("train_step", "recon", "float32", 4.0, 100),
        row("train_step", "recon", "bfloat16", 2.0),
        row("train_step", "ddjax", "float32", 3.0, 50),
        row("train_step", "ddjax", "bfloat16", 1.0),
        row("zeroshot_n1", "recon", "float32", 2.0),
        row("zeroshot_n1", "ddjax", "float32", 1.0),
        row("zeroshot_n8_t0", "ddjax", "float32", 1.1),
    ]
    assert peers.ratios(rows) == {
        "train_step": 0.75,
        "zeroshot_n1": 0.5,
        "train_peak_bytes": 0.5,
        "zeroshot_n8_t0_over_n1": pytest.approx(1.1),
        "train_step_bf16_over_recon_best": 0.5,
    }
