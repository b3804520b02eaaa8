"""ddjax side by side with ReCon's own PyTorch code, on this machine, in one command.

  python benchmarks/peers.py --recon-dir ~/ReCon --torch-python ~/torch-env/bin/python
  python benchmarks/peers.py --recon-dir ~/ReCon --torch-python ... --json > peers.json

`--recon-dir` is a checkout of github.com/qizekun/ReCon (fetched by you; nothing of it is in ddjax);
`--torch-python` an interpreter with torch and ReCon's small requirements (`pip install -r
requirements-torch.txt` in a virtual environment of its own; default: this interpreter). No CLIP
weights are needed: both sides train against cached teacher features.

What is timed, each in a fresh process, the two implementations alternating (which goes first
alternates by round), `--rounds` rounds of `--repeats` timed calls after an untimed first call:
  train_step        ReCon's pretraining model forward + backward + AdamW at its base config, vs
                    ddjax's train step (cached teachers); 1024 points, 64 x 32 groups, the encoder
                    on all 64 tokens (ReCon: 63 of 64, `peers_recon.py` says why); batch 32 on
                    CPU, 128 on a GPU
  zeroshot_n1       ReCon's zero-shot encoder forward vs ddjax's inference at N = 1, t = 0; batch 64
  zeroshot_n8_t0, zeroshot_n8_t600   ddjax's inference at N = 8 (no ReCon counterpart)
On a GPU both run in float32 and in bfloat16 (ReCon under torch.autocast; `--dtypes` picks, also on
CPU, where the GPU half can be dry-run). A process whose slowest
timed call is over `--disturbed` x its fastest was disturbed: it is dropped and run once more.
Where ReCon's CUDA extensions are not built (always on CPU) plain-torch equivalents from
`benchmarks/torch_substitutes.py` run in their place; the output names them.

Per row: median, min and max over the rounds of each process's median call, peak memory (RSS of the
process on CPU; the allocators' peaks on a GPU), parameter counts, the matrix-multiply FLOPs of one
call (torch's FlopCounterMode; ddjax's jaxpr count) and the FLOP/s achieved at the median; ratios
ddjax / ReCon in float32. With --json one JSON document {"rows": [...], "ratios": {...},
"machine": {...}} on stdout; progress goes to stderr. `--remat` (auto: on for CPU, off on a GPU)
is ddjax's --config.model.remat for its train step. Exits 2 with one line on a bad --recon-dir or
a --torch-python without torch, 1 when a measurement fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RECON_FILES = (
    "models/ReCon.py",
    "models/transformer.py",
    "cfgs/pretrain/base.yaml",
    "cfgs/zeroshot/modelnet40.yaml",
)
BOTH = ("train_step", "zeroshot_n1")
DDJAX_ONLY = ("zeroshot_n8_t0", "zeroshot_n8_t600")


class Refusal(Exception):
    """A bad argument or environment: one line, exit 2."""


class Failure(Exception):
    """A measurement that did not finish: one line, exit 1."""


def check_recon_dir(path: str) -> str:
    if not os.path.isdir(path):
        raise Refusal(f"--recon-dir {path}: no such folder (git clone github.com/qizekun/ReCon)")
    missing = [f for f in RECON_FILES if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise Refusal(
            f"--recon-dir {path}: not a ReCon checkout, {', '.join(missing)} missing "
            "(git clone github.com/qizekun/ReCon)"
        )
    return os.path.abspath(path)


def probe_torch(python: str) -> dict:
    try:
        out = subprocess.run(
            [python, os.path.join(HERE, "peers_recon.py"), "--probe"],
            capture_output=True,
            text=True,
            timeout=300,
        )
    except OSError as e:
        raise Refusal(f"--torch-python {python}: cannot run it ({e.strerror})") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise Refusal(
            f"--torch-python {python}: no torch there ({last}); pip install -r "
            "requirements-torch.txt in a virtual environment and pass its python"
        )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_worker(command: list[str], label: str, timeout_s: float) -> dict:
    """Runs one measurement process; its last stdout line is its JSON row."""
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise Failure(f"{label}: no result within {timeout_s:.0f} s (--timeout)") from None
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise Failure(f"{label}: exit {out.returncode}: {last}")
    return json.loads(lines[-1])


def plan(dtypes: tuple[str, ...], rounds: int) -> list[tuple[int, str, str, str]]:
    """(round, what, impl, dtype) in running order: ReCon and ddjax alternate, who goes first
    alternating by round."""
    order = []
    for r in range(rounds):
        impls = ("recon", "ddjax") if r % 2 == 0 else ("ddjax", "recon")
        for dtype in dtypes:
            for what in BOTH:
                order += [(r, what, impl, dtype) for impl in impls]
            order += [(r, what, "ddjax", dtype) for what in DDJAX_ONLY]
    return order


def worker_command(args, impl: str, what: str, dtype: str, batch: int) -> list[str]:
    common = ["--what", what, "--batch", str(batch), "--repeats", str(args.repeats)]
    common += ["--dtype", dtype]
    if impl == "recon":
        script = os.path.join(HERE, "peers_recon.py")
        return [args.torch_python, script, "--recon-dir", args.recon_dir, *common]
    script = os.path.join(HERE, "peers_ddjax.py")
    remat = ["--remat"] if args.remat == "on" else []
    return [sys.executable, script, "--variant", args.variant, *remat, *common]


def disturbed(times: list[float], limit: float) -> bool:
    return len(times) > 1 and max(times) > limit * min(times)


def summarise(results: list[dict]) -> list[dict]:
    """One row per (what, impl, dtype): median/min/max over the processes' medians."""
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["what"], r["impl"], r["dtype"]), []).append(r)
    rows = []
    for (what, impl, dtype), rs in groups.items():
        medians = [statistics.median(r["times_s"]) for r in rs]
        rows.append(
            {
                "what": what,
                "impl": impl,
                "device": rs[0]["device"],
                "dtype": dtype,
                "remat": rs[0].get("remat"),
                "batch": rs[0]["batch"],
                "median_s": statistics.median(medians),
                "min_s": min(medians),
                "max_s": max(medians),
                "peak_bytes": max(r["peak_bytes"] for r in rs),
                "params": rs[0]["params"],
                "flops": rs[0].get("flops"),
                "achieved_flops_per_s": rs[0]["flops"] / statistics.median(medians)
                if rs[0].get("flops")
                else None,
                "processes": len(rs),
            }
        )
    return rows


def ratios(rows: list[dict]) -> dict:
    """ddjax / ReCon in float32 (train step, zero-shot at N = 1, the train step's peak memory), and
    ddjax's N = 8, t = 0 over N = 1; on a GPU also ddjax bfloat16 over ReCon's best train step."""
    at = {(r["what"], r["impl"], r["dtype"]): r for r in rows}
    f32 = lambda what, impl: at.get((what, impl, "float32"))
    out = {}
    for what, key, field in (
        ("train_step", "train_step", "median_s"),
        ("zeroshot_n1", "zeroshot_n1", "median_s"),
        ("train_step", "train_peak_bytes", "peak_bytes"),
    ):
        ours, theirs = f32(what, "ddjax"), f32(what, "recon")
        out[key] = ours[field] / theirs[field] if ours and theirs else None
    n8, n1 = f32("zeroshot_n8_t0", "ddjax"), f32("zeroshot_n1", "ddjax")
    out["zeroshot_n8_t0_over_n1"] = n8["median_s"] / n1["median_s"] if n8 and n1 else None
    bf16 = at.get(("train_step", "ddjax", "bfloat16"))
    recon = [r for (w, i, _), r in at.items() if w == "train_step" and i == "recon"]
    if bf16 and len(recon) > 1:
        out["train_step_bf16_over_recon_best"] = bf16["median_s"] / min(
            r["median_s"] for r in recon
        )
    return out


def table(rows: list[dict], ratio: dict, machine: dict) -> str:
    lines = [
        f"ddjax vs ReCon on {machine['device']} ({machine['processor']}, "
        f"{machine['cpu_count']} CPUs), torch {machine['torch']}",
        f"{'what':18s} {'impl':6s} {'dtype':9s} {'batch':>5s} {'median s':>9s} {'min s':>8s} "
        f"{'max s':>8s} {'peak GiB':>9s} {'params M':>9s} {'GFLOP':>7s} {'GFLOP/s':>8s}",
    ]
    for r in rows:
        lines.append(
            f"{r['what']:18s} {r['impl']:6s} {r['dtype']:9s} {r['batch']:5d} "
            f"{r['median_s']:9.3f} {r['min_s']:8.3f} {r['max_s']:8.3f} "
            f"{r['peak_bytes'] / 2**30:9.2f} {r['params'] / 1e6:9.1f} "
            f"{(r['flops'] or 0) / 1e9:7.1f} {(r['achieved_flops_per_s'] or 0) / 1e9:8.1f}"
        )
    lines.append(
        "ratios ddjax/ReCon: "
        + ", ".join(f"{k} {v:.2f}" for k, v in ratio.items() if v is not None)
    )
    lines.append("substituted in ReCon's code: " + ", ".join(machine["substituted"]))
    lines.append(f"ddjax with remat: {machine['ddjax_remat']}")
    return "\n".join(lines)


def measure(args) -> list[dict]:
    order = plan(args.dtypes, args.rounds)
    results = []
    for n, (r, what, impl, dtype) in enumerate(order, 1):
        batch = args.batch if what == "train_step" else args.zeroshot_batch
        label = f"[{n}/{len(order)}] round {r + 1} {impl} {what} {dtype} batch {batch}"
        command = worker_command(args, impl, what, dtype, batch)
        row = run_worker(command, label, args.timeout)
        if disturbed(row["times_s"], args.disturbed):
            print(f"peers: {label}: disturbed {row['times_s']}, run again", file=sys.stderr)
            row = run_worker(command, label, args.timeout)
        results.append(row)
        print(
            f"peers: {label}: median {statistics.median(row['times_s']):.3f} s, "
            f"peak {row['peak_bytes'] / 2**30:.2f} GiB",
            file=sys.stderr,
            flush=True,
        )
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recon-dir", required=True)
    parser.add_argument("--torch-python", default=sys.executable)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, help="train step batch (32 on CPU, 128 on a GPU)")
    parser.add_argument("--zeroshot-batch", type=int, default=64)
    parser.add_argument(
        "--dtypes", help="float32 and/or bfloat16 (default float32 on CPU, both on a GPU)"
    )
    parser.add_argument("--variant", default="base", help="ddjax's model size")
    parser.add_argument(
        "--remat",
        default="auto",
        choices=("auto", "on", "off"),
        help="ddjax's --config.model.remat; auto: on for CPU (the same step time, a third less "
        "memory, measured), off on a GPU (the model's default)",
    )
    parser.add_argument("--disturbed", type=float, default=1.5)
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per process")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        if args.rounds < 1 or args.repeats < 1:
            raise Refusal("--rounds and --repeats must be at least 1")
        if args.dtypes and not set(args.dtypes.split(",")) <= {"float32", "bfloat16"}:
            raise Refusal(f"--dtypes {args.dtypes}: float32 and/or bfloat16, comma-separated")
        args.recon_dir = check_recon_dir(args.recon_dir)
        probe = probe_torch(args.torch_python)
        args.batch = args.batch or (128 if probe["cuda"] else 32)
        if args.remat == "auto":
            args.remat = "off" if probe["cuda"] else "on"
        args.dtypes = tuple(
            (args.dtypes or ("float32,bfloat16" if probe["cuda"] else "float32")).split(",")
        )
        results = measure(args)
    except Refusal as e:
        print(f"peers: {e}", file=sys.stderr)
        return 2
    except Failure as e:
        print(f"peers: {e}", file=sys.stderr)
        return 1
    rows = summarise(results)
    recon = next(r for r in results if r["impl"] == "recon")
    machine = {
        "device": recon["device"],
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": recon["torch"],
        "torch_threads": recon["threads"],
        "jax": next(r for r in results if r["impl"] == "ddjax")["jax"],
        "substituted": recon["substituted"],
        "ddjax_remat": args.remat == "on",
        "rounds": args.rounds,
        "repeats": args.repeats,
    }
    ratio = ratios(rows)
    if args.json:
        print(json.dumps({"rows": rows, "ratios": ratio, "machine": machine}))
    else:
        print(table(rows, ratio, machine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
