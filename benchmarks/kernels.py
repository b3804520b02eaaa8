"""Kernel benchmark: FPS, kNN and grouping, every implementation on this backend, against the CPU
libraries.

  python benchmarks/kernels.py            # medians and ratios (about 2 minutes on a 2-core CPU)
  python benchmarks/kernels.py --json     # the same as JSON
  python benchmarks/kernels.py --sizes=4x256x16x8   # other sizes, BxNxCENTERSxK (comma-separated)

Sizes: (B=32, N=1024, 64 centers, k=32), the pretraining tokenizer, and (B=32, N=8192, 512 centers,
k=32). `group` (FPS + kNN + gather, what the model runs) is timed for each implementation used for
both ops, and for the backend's default combination (kernels/backend.py: on a GPU Pallas FPS with
XLA kNN), the row marked `default`; on a TPU also the TPU FPS kernel (`pallas_tpu`, Mosaic) alone
and grouping with it and XLA's kNN, the measurement that decides the TPU default. With --json every
measurement is one line as soon as it is timed (with its compile seconds). Baselines, run in the
same process on the same clouds: `fpsample.fps_sampling` (a loop over the batch) for FPS,
`scipy.spatial.cKDTree` (build + query, a loop over the batch) for kNN, and both plus a numpy gather
for grouping. Ours are called under `jax.jit` on device-resident inputs; the ratio is ours /
baseline, so <= 1.0 means no slower. Pallas interpret mode is a correctness tool and is timed on CPU
at N <= 1024 only. Always exits 0.
"""

from __future__ import annotations

import argparse
import os
import sys

import fpsample
import jax
import numpy as np
from scipy.spatial import cKDTree

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from ddjax import pointcloud  # noqa: E402
from ddjax.data.synthetic import procedural_clouds  # noqa: E402
from kernels import backend, fps, knn  # noqa: E402

SIZES = "32x1024x64x32,32x8192x512x32"


def parse_sizes(text: str) -> list[dict]:
    sizes = []
    for item in text.split(","):
        b, n, g, k = (int(v) for v in item.lower().split("x"))
        sizes.append(dict(B=b, N=n, G=g, K=k))
    return sizes


def implementations(n: int) -> list[str]:
    impls = ["xla"]
    if backend.platform() == "gpu":
        impls.append("pallas")
    if n <= 1024 and backend.platform() == "cpu":  # elsewhere the compiled kernels are what matters
        impls.append("pallas_interpret")
    return impls


def bench_size(size: dict, repeats: int, as_json: bool = False) -> list[dict]:
    b, n, g, k = size["B"], size["N"], size["G"], size["K"]
    clouds = procedural_clouds(np.random.default_rng(0), b, n)
    centers_idx = np.stack([fpsample.fps_sampling(c, g, start_idx=0) for c in clouds])
    centers = np.take_along_axis(clouds, centers_idx[..., None], axis=1)
    dev_clouds, dev_centers = jax.device_put(clouds), jax.device_put(centers)

    def base_fps():
        return [fpsample.fps_sampling(c, g, start_idx=0) for c in clouds]

    def base_knn():
        return [cKDTree(c).query(q, k)[1] for c, q in zip(clouds, centers)]

    def base_group():
        out = []
        for c in clouds:
            ctr = c[fpsample.fps_sampling(c, g, start_idx=0)]
            out.append(c[cKDTree(c).query(ctr, k)[1]] - ctr[:, None])
        return out

    baselines = {
        "fps": ("fpsample", common.median_time(base_fps, repeats)),
        "knn": ("cKDTree", common.median_time(base_knn, repeats)),
        "group": ("fpsample+cKDTree", common.median_time(base_group, repeats)),
    }
    defaults = (backend.resolve("fps", None), backend.resolve("knn", None))
    combos = [(impl, impl) for impl in implementations(n)]  # (fps, knn) of `group`
    if defaults not in combos:
        combos.append(defaults)  # e.g. a GPU's Pallas FPS + XLA kNN
    # on a TPU also the TPU FPS kernel (Mosaic), with XLA's kNN: there is no TPU kNN kernel
    if backend.platform() == "tpu":
        combos.append(("pallas_tpu", "xla"))
    rows = []
    for fps_impl, knn_impl in combos:
        reps = 1 if "pallas_interpret" in (fps_impl, knn_impl) else repeats
        ops = {
            "group": jax.jit(
                lambda p, f=fps_impl, k_=knn_impl: pointcloud.group(
                    p, g, k, fps_implementation=f, knn_implementation=k_
                )
            )
        }
        if fps_impl == "pallas_tpu":  # FPS alone, then grouping with XLA's kNN
            ops = {"fps": jax.jit(lambda p: fps(p, g, implementation="pallas_tpu")), **ops}
        if fps_impl == knn_impl:  # the ops alone, once per implementation
            ops = {
                "fps": jax.jit(lambda p, impl=fps_impl: fps(p, g, implementation=impl)),
                "knn": jax.jit(lambda q, p, impl=knn_impl: knn(q, p, k, implementation=impl)),
                **ops,
            }
        args = {"fps": (dev_clouds,), "knn": (dev_centers, dev_clouds), "group": (dev_clouds,)}
        for op, fn in ops.items():
            # first call: compilation (and one run)
            _, compile_s = common.timed(lambda: fn(*args[op]))
            seconds = common.median_time(lambda: jax.block_until_ready(fn(*args[op])), reps)
            base_name, base_seconds = baselines[op]
            impl = fps_impl if fps_impl == knn_impl else f"fps={fps_impl},knn={knn_impl}"
            default = {
                "fps": fps_impl == defaults[0],
                "knn": knn_impl == defaults[1],
                "group": (fps_impl, knn_impl) == defaults,
            }[op]
            row = dict(
                op=op,
                B=b,
                N=n,
                centers=g,
                k=k,
                implementation=impl,
                fps_implementation=fps_impl,
                knn_implementation=knn_impl,
                default=default,
                ms=1e3 * seconds,
                compile_s=compile_s,
                baseline=base_name,
                baseline_ms=1e3 * base_seconds,
                ratio=seconds / base_seconds,
            )
            rows.append(row)
            common.emit(row, as_json)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions per measurement")
    parser.add_argument("--sizes", default=SIZES, help="BxNxCENTERSxK,... (default: %(default)s)")
    args = parser.parse_args()
    rows = []
    for size in parse_sizes(args.sizes):
        rows.extend(bench_size(size, args.repeats, args.json))
    info = common.machine()
    if args.json:
        common.summary(dict(machine=info, results=rows))
        return 0
    print(f"machine: {info}")
    print(
        f"{'op':6s} {'B':>3s} {'N':>5s} {'ctr':>4s} {'k':>3s}  {'implementation':17s} {'ms':>9s}  "
        f"{'baseline':17s} {'ms':>9s}  {'ratio':>6s}"
    )
    for r in rows:
        mark = " (default)" if r["default"] else ""
        print(
            f"{r['op']:6s} {r['B']:3d} {r['N']:5d} {r['centers']:4d} {r['k']:3d}  "
            f"{r['implementation'][:17]:17s} {r['ms']:9.2f}  {r['baseline']:17s} "
            f"{r['baseline_ms']:9.2f}  "
            f"{r['ratio']:6.2f}{mark}"
        )
    return 0


if __name__ == "__main__":
    common.run(main)
