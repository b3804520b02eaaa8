"""ReCon's side of `benchmarks/peers.py`: one measurement of ReCon's own model code in this process,
printed as one JSON line. Run by an interpreter with torch (and ReCon's small requirements: pyyaml,
easydict, termcolor, matplotlib; `requirements-torch.txt`); it never imports jax or ddjax.

  python benchmarks/peers_recon.py --recon-dir DIR --what train_step --batch 32
  python benchmarks/peers_recon.py --recon-dir DIR --what zeroshot_n1 --batch 64
  python benchmarks/peers_recon.py --probe          # {"cuda": bool, "torch": version}

train_step: ReCon's pretraining model (`models.ReCon.ReCon`, the checkout's
cfgs/pretrain/base.yaml) forward + backward + AdamW (lr 5e-4, weight decay 0.05, its optimizer) on
random clouds of 1024 points with cached teacher features; the mask ratio is set to 1/64 (the
encoder sees 63 of the 64 tokens: at ratio 0 ReCon's reconstruction target is empty and its code
fails), `--mask-ratio 0.6` gives its own setting. zeroshot_n1: its zero-shot encoder
(`models.transformer.PointTransformerZeroShot`, cfgs/zeroshot/modelnet40.yaml) forward under
no_grad. CUDA-only modules and the teachers are replaced by `torch_substitutes` (named in the
output). `--dtype bfloat16` runs under torch.autocast. `flops`: torch's FlopCounterMode over one
more call (matrix multiplies and convolutions, the backward included).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch_substitutes  # noqa: E402


class Config(dict):
    """ReCon's EasyDict configs, attribute access over a YAML mapping."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


def read_model_config(path: str) -> Config:
    with open(path) as f:
        model = yaml.safe_load(f)["model"]
    as_config = lambda v: (
        Config({k: as_config(x) for k, x in v.items()}) if isinstance(v, dict) else v
    )
    return as_config(model)


def clouds(batch: int, points: int, device: str) -> torch.Tensor:
    """f32[B, N, 3]: random clouds in the unit ball (the speed does not depend on them)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, points, 3, generator=g)
    return (x / x.norm(dim=-1).amax(dim=1)[:, None, None]).to(device)


def peak_bytes(device: str) -> int:
    if device == "cuda":
        return int(torch.cuda.max_memory_allocated())
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def times_of(fn, repeats: int, device: str) -> list[float]:
    """Seconds of each of `repeats` calls after one warm-up call."""
    fn()
    synchronize(device)
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - start)
    return out


def train_step(recon_dir: str, batch: int, mask_ratio: float, device: str, dtype: str):
    from models.ReCon import ReCon

    config = read_model_config(os.path.join(recon_dir, "cfgs", "pretrain", "base.yaml"))
    config.transformer_config["mask_ratio"] = mask_ratio
    model = ReCon(config).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=5e-4, weight_decay=0.05)
    pts = clouds(batch, 1024, device)
    g = torch.Generator().manual_seed(1)
    img = torch.randn(batch, model.img_encoder.output_dim, generator=g).to(device)
    text = torch.randn(batch, model.text_encoder.embed_dim, generator=g).to(device)

    def step():
        with torch.autocast(device, torch.bfloat16, enabled=dtype == "bfloat16"):
            loss = model(pts, img, text)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, torch_substitutes.count_parameters(model)


def zeroshot(recon_dir: str, batch: int, device: str, dtype: str):
    from models.transformer import PointTransformerZeroShot

    config = read_model_config(os.path.join(recon_dir, "cfgs", "zeroshot", "modelnet40.yaml"))
    model = PointTransformerZeroShot(config).to(device).eval()
    pts = clouds(batch, 1024, device)

    def forward():
        with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=dtype == "bfloat16"):
            model(pts)

    return forward, torch_substitutes.count_parameters(model)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--probe", action="store_true")
    parser.add_argument("--recon-dir")
    parser.add_argument("--what", choices=("train_step", "zeroshot_n1"))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    parser.add_argument("--mask-ratio", type=float, default=1 / 64)
    args = parser.parse_args()
    if args.probe:
        print(json.dumps({"cuda": torch.cuda.is_available(), "torch": torch.__version__}))
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    substituted = torch_substitutes.install(device)
    sys.path.insert(0, os.path.abspath(args.recon_dir))
    torch.manual_seed(0)
    if args.what == "train_step":
        fn, params = train_step(args.recon_dir, args.batch, args.mask_ratio, device, args.dtype)
    else:
        fn, params = zeroshot(args.recon_dir, args.batch, device, args.dtype)
    times = times_of(fn, args.repeats, device)
    with FlopCounterMode(display=False) as counter:  # one more call, counted, not timed
        fn()
    row = {
        "what": args.what,
        "impl": "recon",
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "dtype": args.dtype,
        "batch": args.batch,
        "times_s": times,
        "peak_bytes": peak_bytes(device),
        "params": params,
        "flops": float(counter.get_total_flops()),
        "substituted": substituted,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
