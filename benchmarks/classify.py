"""Classify benchmark: a user's wall time for `configs/classify.py`, first file and each additional
file.

  python benchmarks/classify.py        # runs/smoke (make run's checkpoint), about 2 minutes
  python benchmarks/classify.py --run=RUN_DIR --files=11 --meshes=DIR --json

Works on a copy of the run folder (its label cache is the benchmark's own). Three commands, each
a fresh `python main.py` process as a user runs it, on the .off meshes under --meshes (for
example ModelNet40's, from its official archive) when given, else on procedural clouds: `cold`
(1 file, no cached label features: the CLIP teacher is loaded), `warm` (1 file, the features
cached by the first command), `many` (FILES files in one call) and, as the same-run baseline,
`singles` (the first 3 files as 3 separate warm calls, against `many3`: the same 3 files in one
call). Per additional file is (many - warm) / (FILES - 1). Always exits 0. With --json one line
per command as soon as it has run, then the summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
BEFORE_S = 28.7  # one classify call before the multi-file job (measured then, not re-measurable)


def _command(run: pathlib.Path, files: list[pathlib.Path]) -> float:
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"), HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/classify.py",
            f"--config.checkpoint={run}",
            "--config.labels=airplane,bathtub,bed,chair,desk,lamp,sofa,table",
            "--config.input=" + ",".join(str(f) for f in files),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-2000:])
    assert sum(line.startswith("{") for line in proc.stdout.splitlines()) == len(files)
    return took


def emit(row: dict, as_json: bool) -> None:
    """One measurement, flushed at once (benchmarks/common.emit's format; this script never imports
    JAX)."""
    print(json.dumps({"measurement": row}) if as_json else f"  {row}", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", default=str(ROOT / "runs" / "smoke"))
    parser.add_argument("--files", type=int, default=11)
    parser.add_argument(
        "--meshes", default="", help="a folder of .off meshes (searched recursively)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    source = pathlib.Path(args.run)
    if not (source / "config.json").is_file():
        print(f"no run at {source}: make run first (or pass --run=RUN_DIR)")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        run = tmp / "run"
        shutil.copytree(source, run, ignore=shutil.ignore_patterns("classify_text_*.npy"))
        meshes = (
            sorted(pathlib.Path(args.meshes).expanduser().rglob("*.off")) if args.meshes else []
        )
        files = [meshes[i % len(meshes)] for i in range(args.files)] if meshes else []
        if not files:
            rng = np.random.default_rng(0)
            for i in range(args.files):
                np.save(tmp / f"cloud{i}.npy", rng.normal(size=(4096, 3)))
            files = [tmp / f"cloud{i}.npy" for i in range(args.files)]

        def timed(name: str, chosen: list) -> float:
            seconds = _command(run, chosen)
            emit({"command": name, "files": len(chosen), "s": round(seconds, 2)}, args.json)
            return seconds

        cold = timed("cold", files[:1])
        warm = timed("warm", files[:1])
        many = timed("many", files)
        singles = sum(timed("single", [f]) for f in files[:3])
        many3 = timed("many3", files[:3])
    result = {
        "singles_3_s": round(singles, 2),
        "one_call_3_s": round(many3, 2),
        "one_call_speedup_3": round(singles / many3, 2),
        "cold_s": round(cold, 2),
        "warm_s": round(warm, 2),
        f"files_{args.files}_s": round(many, 2),
        "per_additional_file_s": round((many - warm) / max(args.files - 1, 1), 3),
        "before_s": BEFORE_S,
        "first_file_speedup_warm": round(BEFORE_S / warm, 2),
        "first_file_speedup_cold": round(BEFORE_S / cold, 2),
        "inputs": "real meshes" if meshes else "npy",
    }
    print(json.dumps(result) if args.json else "\n".join(f"{k}: {v}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
