"""`make device-check OUT=DIR`: one prepared command that validates and measures ddjax on a device.

  python benchmarks/device_check.py --out DIR [--backend gpu|tpu|cpu] [--budget 480]
      [--wheels device_wheels]

Made for a bare accelerator machine without internet, with its own Python 3.12 and JAX (a GPU
image) and a short session (a rented GPU by the quarter hour, start-up included): it installs
the wheels of `make device-wheels` into a temporary site directory (`pip install --no-index
--no-deps --target`, then PYTHONPATH) and runs, within a wall-clock budget, one item after
another, each in its own process with its own time limit, in order of value:

   1. environment      versions, imports, devices, the kernels picked
   2. bench_train      the paper's setting: base model, batch 128, float32 and bfloat16, cached
                       and online teachers, in one process (compiled from shapes first, then run
                       smallest first, so each device peak that rises is exact: benchmarks/train.py)
   3. trainer_e2e      the real trainer through main.py: base model, batch 128, synthetic set
                       with its tiny CLIP teacher; a checkpoint, a resumed run, the zero-shot job;
                       time to first step, cold and with the warm compilation cache
   4. bench_zeroshot   shapes/s at N in {1, 8} x t in {0, 600}
   5. bench_attacks    PGD-50 shapes/s (paper mode, N = 8), with and without the success check
      bench_attacks_uni3d  PGD-50 shapes/s of Uni3D-tiny (10,000 points; Table 2's Uni3D column)
   6. bench_kernels    FPS/kNN/grouping, every implementation and the default combination
   7. bench_compile    lower/compile seconds and StableHLO size of the train step and zero-shot
                       function, base against depth 1, cold and warm cache (benchmarks/compile.py)
      portability      the tiny model's train step, zero-shot and attack gradient against the CPU
                       reference values (benchmarks/portability.py): within the tolerance of the
                       device's float32 precision
   8. kernel_tests     Pallas kernels against numpy, index for index, at B in {32, 128} x N in
                       {1024, 8192}
   9. model_tests      the model's comparison tests (vmapped vs looped paths, scanned vs unrolled)

Every item shares one persistent compilation cache (JAX_COMPILATION_CACHE_DIR in the scratch
folder, or --jax-cache=DIR): the resumed run and the zero-shot job load what the first run
compiled. Every benchmark prints each measurement as one JSON line the moment it exists; an item
killed at its limit keeps them (`partial: true`, with how far it got), and so does a pytest item
(its -v lines).

Time limits (the arithmetic; `plan` in the report lists each item's): an item's limit is 1.5 x its
expected cost, cost = START_S + compilations x C + steps x S, where C is the seconds to compile the
base train step and S one train step at batch 128 (float32, cached teacher). Before bench_train has
run, C and S are the ASSUMED values (deliberately high); after it, what it measured on this device
(its slowest compilation, its step time), so the later items' limits follow the device. Fixed costs
are measurements: the kernel tests took 92.6 s and the kernel benchmark 33 s on the first H200 run
(benchmarks/results/nvidia-h200-2026-12-04/). The default budget, 480 s, is 8 minutes: a short
session on a rented GPU; an item is skipped when
less than its minimum is left, and an item's limit never exceeds what is left.

DIR receives exactly two files, rewritten after every item so that a killed run keeps what finished:
`device_check.json` (versions, device, every figure, `checks`: a list of {name, pass, seconds}, the
plan with each item's limit, each item's full result and measurements) and `device_check.log` (every
command's complete output). With --backend cpu the sizes are tiny (`--sizes tiny`, the default
there): that is the same command run by CI, so it cannot rot between GPU runs. Exit status 0 when
every check that ran passed and none was skipped for want of time.

Standard library only: it runs before the wheels are installed, and never imports JAX itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Callable

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLATFORM_OF = {"gpu": "cuda", "tpu": "tpu", "cpu": "cpu"}  # --backend -> JAX_PLATFORMS
PACKAGES = (
    "jax",
    "jaxlib",
    "jax-cuda13-plugin",
    "jax-cuda12-plugin",
    "libtpu",
    "flax",
    "optax",
    "orbax-checkpoint",
    "numpy",
    "ml_collections",
    "transformers",
    "huggingface-hub",
    "tokenizers",
    "grain",
    "array-record",
    "tensorflow-datasets",
    "tensorflow-metadata",
    "protobuf",
    "etils",
    "scipy",
    "fpsample",
    "pytest",
)
IMPORTS = (
    "jax",
    "flax",
    "optax",
    "orbax.checkpoint",
    "numpy",
    "ml_collections",
    "grain",
    "array_record",
    "tensorflow_datasets",
    "fpsample",
    "scipy",
    "pytest",
    "ddjax.jobs.pretrain",
    "ddjax.jobs.attack",
    "kernels",
)


# a fresh Python process: imports, the backend's start-up, the first small compilations
START_S = 20.0
# C and S before bench_train measures them (deliberately high)
ASSUMED = {"compile_s": 45.0, "step_s": 0.5}


@dataclasses.dataclass
class Item:
    name: str
    stage: str  # a: environment, b: the paper's figures, c: more benchmarks, d: tests
    min_s: float  # not started with less than this left
    # expected seconds from (C, S): compile and step seconds on this device
    cost: Callable[[float, float], float]
    argv: list[str] | None = None  # one command, parsed by `kind`
    kind: str = "json"  # json: a benchmark's --json output; pytest; probe; e2e
    env: dict[str, str] = dataclasses.field(default_factory=dict)
    with_cpu: bool = False  # the CPU backend beside the device's (JAX_PLATFORMS=cuda,cpu)

    def cap_s(self, c: float, s: float) -> float:
        """Its time limit: 1.5 x the expected cost."""
        return 1.5 * self.cost(c, s)


# -------------------------------------------------------------------------------------------- the
# plan
def plan(sizes: str, python: str) -> list[Item]:
    """What runs, in order of value, for the `full` (accelerator) or `tiny` (CPU CI) sizes."""
    bench = lambda script, *args: [python, f"benchmarks/{script}.py", "--json", *args]
    pytest = lambda *args: [
        python,
        "-m",
        "pytest",
        "-v",
        "-p",
        "no:cacheprovider",
        "-o",
        "addopts=",
        *args,
    ]
    kernel_tests = [
        "tests/test_kernels_exact.py",
        "tests/test_fps.py",
        "tests/test_knn.py",
        "tests/test_backend.py",
        "tests/test_gpu_lowering.py",
        "tests/test_validation.py",
    ]
    model_tests = [
        "tests/test_model.py",
        "-k",
        "parallel_noise_inference or scanned or identity_at_init",
    ]
    probe = Item(
        "environment",
        "a",
        5,
        lambda c, s: 40,
        [python, "benchmarks/device_check.py", "--probe"],
        kind="probe",
    )
    if sizes == "full":
        return [
            probe,
            # 4 compilations from shapes, then 4 x (initialisation, warm-up and 3 timed steps;
            # online ~2 x S).
            Item(
                "bench_train",
                "b",
                60,
                lambda c, s: START_S + 4 * c + 4 * (5 + 4 * 2 * s),
                bench(
                    "train", "--batches=128", "--dtypes=float32,bfloat16", "--modes=cached,online"
                ),
            ),
            # 3 processes; data and tiny teacher; first half: C + 20 steps; resume: a cache
            # hit + 20 steps; the zero-shot job: about C / 2 and its batches.
            Item(
                "trainer_e2e",
                "b",
                90,
                lambda c, s: 3 * START_S + 40 + 1.6 * c + 40 * 2 * s + 15,
                kind="e2e",
            ),
            # 4 settings, each a compilation (about C / 2: no backward pass) and 4 batches of 64.
            Item(
                "bench_zeroshot", "c", 30, lambda c, s: START_S + 2 * c + 16 * s, bench("zeroshot")
            ),
            # two PGD-50 programs (with and without the success check, about C each) and their
            # runs: 50 steps of 8 paths x 32 shapes (about 2 S each), the check a few more passes.
            Item(
                "bench_attacks",
                "c",
                30,
                lambda c, s: START_S + 2 * c + 220 * s,
                bench("attacks", "--modes=paper"),
            ),
            # Table 2's Uni3D column: one PGD-50 program of Uni3D-tiny (a smaller model than the
            # base one, about C) and 50 steps at batch 32 x 10,000 points, one draw each (about S).
            Item(
                "bench_attacks_uni3d",
                "c",
                30,
                lambda c, s: START_S + c + 50 * s,
                bench("attacks", "--model=uni3d_tiny", "--no-baseline"),
            ),
            # 33 s on the first H200 run
            Item("bench_kernels", "c", 15, lambda c, s: 40, bench("kernels")),
            # 8 lowerings and compilations: base and depth 1 (cold, about 2.5 C), then from the
            # cache (warm).
            Item("bench_compile", "c", 30, lambda c, s: START_S + 3 * c, bench("compile")),
            # the tiny model's programs against the CPU reference: 3 compilations, 20 small steps
            # (weights made on the CPU backend, so every device starts from the same bits)
            Item(
                "portability",
                "c",
                15,
                lambda c, s: START_S + 60,
                bench("portability"),
                with_cpu=True,
            ),
            # 92.6 s there
            Item(
                "kernel_tests",
                "d",
                20,
                lambda c, s: 100,
                pytest(*kernel_tests),
                kind="pytest",
                env={"DDJAX_KERNEL_SIZES": "32x1024,128x1024,32x8192,128x8192"},
            ),
            Item(
                "model_tests",
                "d",
                20,
                lambda c, s: START_S + 40,
                pytest(*model_tests),
                kind="pytest",
            ),
        ]
    return [
        probe,
        Item(
            "bench_train",
            "b",
            10,
            lambda c, s: 120,
            bench(
                "train",
                "--variant=tiny",
                "--batches=8",
                "--points=256",
                "--clip=tiny",
                "--dtypes=float32,bfloat16",
                "--modes=cached,online",
                "--repeats=1",
            ),
        ),
        Item("trainer_e2e", "b", 20, lambda c, s: 200, kind="e2e"),
        Item(
            "bench_zeroshot",
            "c",
            5,
            lambda c, s: 40,
            bench(
                "zeroshot",
                "--variant=tiny",
                "--batch=4",
                "--points=256",
                "--num_paths=1,2",
                "--repeats=1",
            ),
        ),
        Item(
            "bench_attacks",
            "c",
            10,
            lambda c, s: 120,
            bench(
                "attacks",
                "--variant=tiny",
                "--batch=2",
                "--points=256",
                "--num_paths=2",
                "--modes=paper",
            ),
        ),
        Item(
            "bench_attacks_uni3d",
            "c",
            10,
            lambda c, s: 80,
            # --quick: 5 and 10 steps, 50 estimated (CI time: PGD-50 itself took 71 s of CI's 2
            # cores, for a figure that a CPU run never reports)
            bench(
                "attacks",
                "--model=uni3d_tiny",
                "--batch=1",
                "--points=600",
                "--no-baseline",
                "--quick",
            ),
        ),
        Item(
            "bench_kernels",
            "c",
            5,
            lambda c, s: 40,
            bench("kernels", "--sizes=4x256x16x8", "--repeats=2"),
        ),
        Item(
            "bench_compile",
            "c",
            10,
            lambda c, s: 100,
            bench(
                "compile",
                "--variant=tiny",
                "--batch=4",
                "--zeroshot-batch=4",
                "--points=256",
                "--num_paths=2",
            ),
        ),
        # 24 s on a 2-core CPU
        Item("portability", "c", 10, lambda c, s: 60, bench("portability"), with_cpu=True),
        Item(
            "kernel_tests",
            "d",
            10,
            lambda c, s: 80,
            pytest(*kernel_tests[:2], "tests/test_backend.py"),
            kind="pytest",
            env={"DDJAX_KERNEL_SIZES": "2x256,2x1024"},
        ),
        Item("model_tests", "d", 10, lambda c, s: 120, pytest(*model_tests), kind="pytest"),
    ]


def device_speed(items: dict) -> tuple[float, float, str]:
    """(C, S, where they come from): the base train step's compile and step seconds measured by
    bench_train on this device (its slowest compilation; its float32 cached step, else its slowest),
    else ASSUMED."""
    rows = (items.get("bench_train") or {}).get("measurements") or []
    compiles = [r["compile_s"] for r in rows if r.get("compile_s") is not None]
    steps = [r["step_s"] for r in rows if r.get("step_s") is not None]
    if not compiles or not steps:
        return ASSUMED["compile_s"], ASSUMED["step_s"], "assumed"
    f32 = [r["step_s"] for r in rows if r.get("mode") == "cached" and r.get("dtype") == "float32"]
    return max(compiles), (f32 or [max(steps)])[0], "measured by bench_train"


def e2e_commands(
    sizes: str, python: str, scratch: pathlib.Path
) -> tuple[list[tuple[str, list[str]]], int]:
    """The trainer end to end: first half (checkpoint), resumed second half, zero-shot job; and the
    step at which the second run resumes."""
    run_dir, tfds_dir, zs_dir = scratch / "run", scratch / "tfds", scratch / "zeroshot"
    if sizes == "full":
        dataset, steps, every = "synthetic_shapes", 40, 20
        train = [
            "--config=configs/pretrain.py:smoke,variant=base",
            "--config.batch_size=128",
            "--config.worker_count=4",
            "--config.log_every=5",
        ]
        zs = ["--config.npoints=1024", "--config.point_all=1200"]
    else:
        dataset, steps, every = "synthetic_shapes/tiny", 4, 2
        train = [
            "--config=configs/pretrain.py:smoke",
            "--config.batch_size=8",
            "--config.log_every=1",
            # the tests' teacher (tests/conftest.py, TEST_TEACHER): jobs refuse
            # one that learned nothing (ddjax/teachers/sanity.py)
            "--config.tiny_teacher.width=32",
            "--config.tiny_teacher.steps=400",
            "--config.tiny_teacher.tokenizer_dir=fallback",
        ]
        zs = ["--config.batch_size=8"]
    # The trainer's own end-of-run evaluation is off (it would compile and run twice): the zero-shot
    # job scores.
    common = [
        f"--workdir={run_dir}",
        f"--config.dataset={dataset}",
        f"--config.data_dir={tfds_dir}",
        "--config.eval.dataset=",
        f"--config.checkpoint_every={every}",
    ]
    main = [python, "main.py"]
    return [
        ("first_half", main + train + common + [f"--config.total_steps={every}"]),
        (
            "resume",
            main
            + train
            + common
            + [f"--config.total_steps={steps}", "--config.allow_changes=total_steps"],
        ),
        (
            "zeroshot_job",
            main
            + [
                "--config=configs/zeroshot.py:smoke",
                f"--config.checkpoint={run_dir}",
                f"--config.dataset={dataset}",
                f"--config.data_dir={tfds_dir}",
                f"--workdir={zs_dir}",
            ]
            + zs,
        ),
    ], every


# ---------------------------------------------------------------------------------------- running
class Log:
    """The full log in OUT/device_check.log; one progress line per item on the console."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.file = open(path, "a", buffering=1)

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.file.write(line + "\n")


def run_command(
    argv: list[str], env: dict[str, str], timeout: float, log: Log
) -> tuple[int | None, str, float]:
    """Runs argv in its own process group with `timeout`; returns (exit code or None on timeout,
    stdout, s). stderr goes to the log as it comes; stdout is captured and logged too."""
    log.file.write(f"\n$ {' '.join(argv)}\n")
    log.file.flush()
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=log.file, start_new_session=True
        )
        try:
            code = proc.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            code = None
        out.seek(0)
        stdout = out.read()
    log.file.write(stdout)
    seconds = time.monotonic() - start
    log.file.write(
        f"[exit {code if code is not None else 'killed: over its time limit'} after {seconds:.1f} "
        "s]\n"
    )
    log.file.flush()
    return code, stdout, seconds


def parse_json(stdout: str):
    """The benchmark's summary: the last JSON object of its output that is not a measurement line
    (older benchmarks printed it indented over several lines, which is read too), or None."""
    lines = stdout.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        if not lines[i].startswith("{"):
            continue
        for text in (lines[i], "\n".join(lines[i:])):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict) and "measurement" not in value:
                return value
    return None


def parse_measurements(stdout: str) -> list[dict]:
    """Every `{"measurement": row}` line a benchmark printed (benchmarks/common.emit), in order:
    what a killed benchmark leaves."""
    rows = []
    for line in stdout.splitlines():
        if line.startswith('{"measurement"'):
            try:
                rows.append(json.loads(line)["measurement"])
            except (json.JSONDecodeError, KeyError):
                continue
    return rows


def parse_pytest_lines(stdout: str) -> dict:
    """Outcomes from pytest -v lines (`tests/x.py::test_y PASSED`): what a killed pytest leaves."""
    outcomes = {"passed": [], "failed": [], "skipped": []}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and "::" in parts[0]:
            word = parts[1].lower()
            if word in ("passed", "failed", "error", "skipped", "xfail", "xpassed"):
                key = {"error": "failed", "xfail": "skipped", "xpassed": "passed"}.get(word, word)
                outcomes[key].append(parts[0])
    return outcomes


def parse_junit(path: pathlib.Path) -> dict:
    """Counts and failing test ids from pytest's JUnit XML."""
    suite = ET.parse(path).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    failed, skipped, passed = [], [], 0
    for case in suite.iter("testcase"):
        name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
        bad = case.find("failure") if case.find("failure") is not None else case.find("error")
        if bad is not None:
            failed.append({"test": name, "message": (bad.get("message") or "")[:500]})
        elif case.find("skipped") is not None:
            skipped.append(
                {"test": name, "reason": (case.find("skipped").get("message") or "")[:200]}
            )
        else:
            passed += 1
    return {"passed": passed, "failed": failed, "skipped": skipped}


def run_item(
    item: Item,
    env: dict[str, str],
    timeout: float,
    log: Log,
    sizes: str,
    python: str,
    scratch: pathlib.Path,
) -> dict:
    """Runs one item; returns {pass, seconds, result, measurements, note} (partial: true when it was
    killed at its limit: what it had measured or passed by then)."""
    env = {**env, **item.env}
    if item.with_cpu and env.get("JAX_PLATFORMS", "cpu") != "cpu":
        env["JAX_PLATFORMS"] += ",cpu"  # the device stays the default backend
    if item.kind == "e2e":
        return run_e2e(env, timeout, log, sizes, python, scratch)
    argv = list(item.argv)
    junit = scratch / f"{item.name}.xml"
    if item.kind == "pytest":
        argv += [f"--junitxml={junit}"]
    code, stdout, seconds = run_command(argv, env, timeout, log)
    out = {"seconds": seconds, "exit": code}
    if item.kind == "json":
        out["measurements"] = parse_measurements(stdout)
    if code is None:
        if item.kind == "pytest":
            done = parse_pytest_lines(stdout)
            last = (done["passed"] + done["failed"] + done["skipped"])[-1:] or ["none"]
            return {
                **out,
                "pass": False,
                "partial": True,
                "result": {
                    "passed": len(done["passed"]),
                    "failed": [{"test": t, "message": "(killed)"} for t in done["failed"]],
                    "skipped": [{"test": t, "reason": ""} for t in done["skipped"]],
                },
                "note": f"killed at its time limit of {round(timeout, 1):g} s after "
                f"{len(done['passed'])} passed, "
                f"{len(done['failed'])} failed (last: {last[0]})",
            }
        got = len(out.get("measurements", []))
        return {
            **out,
            "pass": False,
            "partial": got > 0,
            "note": f"killed at its time limit of {round(timeout, 1):g} s after {got} "
            f"measurement{'s' * (got != 1)}",
        }
    if item.kind == "pytest":
        if not junit.is_file():
            return {**out, "pass": False, "note": "pytest wrote no report"}
        result = parse_junit(junit)
        note = (
            f"{result['passed']} passed, {len(result['failed'])} failed, "
            f"{len(result['skipped'])} skipped"
        )
        return {**out, "pass": code == 0 and not result["failed"], "result": result, "note": note}
    result = parse_json(stdout)
    if result is None:
        return {
            **out,
            "pass": False,
            "note": "printed no JSON (see the log: `benchmark error` names the cause)",
        }
    # a probe passes when it says ok; a benchmark when it exits 0 and does not say `pass: false`
    ok = code == 0 and (
        result.get("ok", False) if item.kind == "probe" else result.get("pass", True)
    )
    note = result.get("problem", "") if item.kind == "probe" else ""
    if "comparison" in result:  # the portability benchmark: how far from the CPU reference
        note = (
            "exact"
            if result["comparison"].get("exact")
            else f"{result.get('precision')} " + ("tolerance met" if ok else "tolerance NOT met")
        )
    return {**out, "pass": bool(ok), "result": result, "note": note}


FIRST_STEP = re.compile(r"^first step after ([0-9.]+) s$", re.M)


def run_e2e(
    env: dict[str, str], timeout: float, log: Log, sizes: str, python: str, scratch: pathlib.Path
) -> dict:
    deadline = time.monotonic() + timeout
    scratch = scratch / "e2e"
    shutil.rmtree(scratch, ignore_errors=True)
    steps, result = {}, {}
    commands, resume_step = e2e_commands(sizes, python, scratch)
    for name, argv in commands:
        left = deadline - time.monotonic()
        if left < 5:
            return {
                "pass": False,
                "seconds": timeout,
                "result": result,
                "note": f"no time left for {name}",
            }
        code, stdout, seconds = run_command(argv, env, left, log)
        steps[name] = {"exit": code, "seconds": seconds}
        # process start to its first step (or batch): what a user waits
        first = FIRST_STEP.search(stdout)
        if first:
            steps[name]["first_step_s"] = float(first[1])
        result["steps"] = steps
        if code != 0:
            why = "killed at the item's time limit" if code is None else f"exit {code}"
            return {
                "pass": False,
                "seconds": sum(s["seconds"] for s in steps.values()),
                "result": result,
                "note": f"{name}: {why} (see the log)",
            }
        if (
            name == "resume"
            and f"resumed from {scratch / 'run' / 'checkpoints' / str(resume_step)}" not in stdout
        ):
            return {
                "pass": False,
                "seconds": sum(s["seconds"] for s in steps.values()),
                "result": result,
                "note": "the second run did not resume from the first run's checkpoint "
                f"{resume_step}",
            }
    run_dir = scratch / "run"
    metrics = [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if line.strip()
    ]
    config = json.loads((run_dir / "config.json").read_text())
    zs = json.loads((scratch / "zeroshot" / "zeroshot.json").read_text())
    total = config["resolved"]["total_steps"]
    rates = [m["steps_per_sec"] for m in metrics if m.get("steps_per_sec")]
    result.update(
        {
            "total_steps": total,
            "batch_size": config["batch_size"],
            "model_width": config["model"]["width"],
            "last_step": metrics[-1]["step"] if metrics else None,
            "final_loss": metrics[-1]["loss"] if metrics else None,
            "steps_per_sec_median": sorted(rates)[len(rates) // 2] if rates else None,
            "samples_per_sec_median": (sorted(rates)[len(rates) // 2] * config["batch_size"])
            if rates
            else None,
            "checkpoints": sorted(
                int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()
            ),
            "zeroshot_top1": zs.get("top1"),
            "zeroshot_top5": zs.get("top5"),
            "zeroshot_samples": zs.get("num_samples"),
            "first_step_s": steps["first_half"].get("first_step_s"),  # a cold compilation cache
            # the first run's programs in the cache
            "first_step_s_resumed": steps["resume"].get("first_step_s"),
            "zeroshot_job_first_step_s": steps["zeroshot_job"].get("first_step_s"),
        }
    )
    ok = (
        result["last_step"] == total
        and total in result["checkpoints"]
        and all(map(_finite, [m["loss"] for m in metrics]))
        and zs.get("top1") is not None
    )
    rate = result["samples_per_sec_median"]
    note = (
        f"{total} steps of batch {config['batch_size']} (width {config['model']['width']}), "
        "resumed at step "
        f"{resume_step}, {rate if rate is None else round(rate, 1)} samples/s, zero-shot top-1 "
        f"{zs.get('top1') if zs.get('top1') is None else round(zs['top1'], 3)}, first step after "
        f"{result['first_step_s']} s (resumed: {result['first_step_s_resumed']} s)"
    )
    return {
        "pass": ok,
        "seconds": sum(s["seconds"] for s in steps.values()),
        "result": result,
        "note": note,
    }


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


# ---------------------------------------------------------------------------------------- figures
def figures(items: dict) -> dict:
    """The headline numbers, flat, for the README's tables (None where not measured), from every
    item's measurement lines: an item killed at its limit still gives what it measured."""
    f = {}
    rows = lambda name: (items.get(name) or {}).get("measurements") or []
    for r in rows("bench_kernels"):
        f[f"{r['op']}_{r['implementation']}_ms_B{r['B']}_N{r['N']}"] = r["ms"]
        if r.get("default") and r["op"] == "group":
            f[f"group_default_ms_B{r['B']}_N{r['N']}"] = r["ms"]
    for r in rows("bench_train"):
        key = f"train_{r['mode']}_{r['dtype']}_b{r['batch']}"
        for field in (
            "step_s",
            "samples_per_s",
            "mfu",
            "device_peak_bytes",
            "device_peak_bytes_at_most",
            "xla_peak_bytes",
            "paper_run_hours",
            "compile_s",
            "lower_s",
        ):
            if field in r:
                f[f"{key}_{field}"] = r[field]
    for r in rows("bench_zeroshot"):
        f[f"zeroshot_shapes_per_s_t{r['t']}_N{r['num_paths']}"] = r["shapes_per_s"]
        if "compile_s" in r:
            f[f"zeroshot_compile_s_t{r['t']}_N{r['num_paths']}"] = r["compile_s"]
    for r in rows("bench_attacks"):
        key = f"attack_pgd50_{r['mode']}" + ("_no_check" if r.get("success_draws") == 0 else "")
        if "check_cost_ratio" in r:  # the success check's cost against the attack without it
            f[f"attack_pgd50_{r['mode']}_check_cost_ratio"] = r["check_cost_ratio"]
            continue
        f[f"{key}_shapes_per_s"] = r["shapes_per_s"]
        f[f"{key}_seconds_per_batch"] = r["seconds_50_steps"]
        f[f"{key}_compile_s"] = r.get("compile_s")
    for r in rows("bench_attacks_uni3d"):
        f["attack_pgd50_uni3d_tiny_shapes_per_s"] = r["shapes_per_s"]
        f["attack_pgd50_uni3d_tiny_seconds_per_batch"] = r["seconds_50_steps"]
        f["attack_pgd50_uni3d_tiny_compile_s"] = r.get("compile_s")
    for r in rows("bench_compile"):
        key = f"compile_{r['function']}_depth{r['depth']}_{r['cache']}"
        f[f"{key}_compile_s"], f[f"{key}_lower_s"], f[f"{key}_hlo_ops"] = (
            r["compile_s"],
            r["lower_s"],
            r["hlo_ops"],
        )
    portability = (items.get("portability") or {}).get("result") or {}
    for name, row in (portability.get("comparison") or {}).items():
        if isinstance(row, dict):
            for field, value in row.items():
                if field != "within":
                    f[f"portability_{name}_{field}"] = value
    if portability:
        f["portability_pass"] = portability.get("pass")
        f["portability_step_s"] = portability["costs"]["step_s"]
    e2e = (items.get("trainer_e2e") or {}).get("result") or {}
    for field in (
        "steps_per_sec_median",
        "samples_per_sec_median",
        "zeroshot_top1",
        "final_loss",
        "first_step_s",
        "first_step_s_resumed",
        "zeroshot_job_first_step_s",
    ):
        if field in e2e:
            f[f"trainer_{field}"] = e2e[field]
    return f


# ---------------------------------------------------------------------------------------- install
def install_wheels(python: str, wheels: pathlib.Path, site: pathlib.Path, log: Log) -> dict:
    files = sorted(wheels.glob("*.whl"))
    manifest = wheels / "MANIFEST.json"
    info = {"wheels_dir": str(wheels), "site": str(site), "wheels": len(files)}
    if not files:
        return {
            **info,
            "pass": False,
            "note": f"no wheels in {wheels} (run `make device-wheels` where PyPI is reachable)",
        }
    if manifest.is_file():
        listed = {w["file"] for w in json.loads(manifest.read_text())["wheels"]}
        if listed != {p.name for p in files}:
            return {
                **info,
                "pass": False,
                "note": f"{wheels} does not match its MANIFEST.json: run make device-wheels",
            }
    code, _, seconds = run_command(
        [
            python,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-compile",
            "--no-cache-dir",
            "--upgrade",
            "--target",
            str(site),
            *map(str, files),
        ],
        dict(os.environ),
        300,
        log,
    )
    return {
        **info,
        "pass": code == 0,
        "seconds": seconds,
        "note": "" if code == 0 else "pip install failed (see the log)",
    }


# ------------------------------------------------------------------------------------------ probe
def probe() -> int:
    """Runs in the child: versions, imports, requirement conflicts among what is installed, devices,
    kernels."""
    import importlib
    import importlib.metadata as md

    # the repository before benchmarks/ (whose kernels.py shadows the package)
    sys.path.insert(0, str(ROOT))
    result = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "versions": {},
        "imports": {},
        "requirement_conflicts": [],
    }
    for name in PACKAGES:
        try:
            result["versions"][name] = md.version(name)
        except md.PackageNotFoundError:
            result["versions"][name] = None
    for name in IMPORTS:
        try:
            importlib.import_module(name)
            result["imports"][name] = "ok"
        except Exception as e:  # a missing or broken package: report it, do not stop
            result["imports"][name] = f"{type(e).__name__}: {e}"[:300]
    try:
        from transformers import FlaxCLIPModel  # noqa: F401  (5.x has no Flax)

        result["imports"]["transformers.FlaxCLIPModel"] = "ok"
    except Exception as e:
        result["imports"]["transformers.FlaxCLIPModel"] = f"{type(e).__name__}: {e}"[:300]
    result["requirement_conflicts"] = requirement_conflicts()
    broken = [k for k, v in result["imports"].items() if v != "ok"]
    try:
        import jax

        from kernels import backend

        devices = jax.devices()
        result["device"] = {
            "backend": jax.default_backend(),
            "platform": backend.platform(),
            "kind": devices[0].device_kind,
            "count": len(devices),
            "describe": backend.describe(),
            "memory_bytes": (devices[0].memory_stats() or {}).get("bytes_limit")
            if hasattr(devices[0], "memory_stats")
            else None,
        }
    except Exception as e:
        result["device"] = {"error": f"{type(e).__name__}: {e}"[:500]}
    want = os.environ.get("DDJAX_DEVICE_BACKEND", "")
    got = result["device"].get("platform")
    problems = []
    if broken:
        problems.append(f"imports failed: {broken}")
    if want and got != want:
        problems.append(f"asked for backend {want!r}, JAX runs on {got!r}")
    result["ok"] = not problems
    result["problem"] = "; ".join(problems)
    print(json.dumps(result, indent=2, default=str))
    return 0


def requirement_conflicts() -> list[str]:
    """Declared requirements of the installed packages ddjax uses that the installed versions do not
    meet."""
    import importlib.metadata as md

    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["(packaging not installed: not checked)"]
    roots = (
        "transformers",
        "grain",
        "tensorflow-datasets",
        "tensorflow-metadata",
        "array-record",
        "flax",
        "optax",
        "orbax-checkpoint",
        "ml_collections",
        "huggingface-hub",
        "googleapis-common-protos",
    )
    problems = []
    for root in roots:
        try:
            dist = md.distribution(root)
        except md.PackageNotFoundError:
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                problems.append(f"{root} needs {req}, not installed")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                problems.append(f"{root} needs {req}, found {have}")
    return problems


# ------------------------------------------------------------------------------------------ main
def write_report(path: pathlib.Path, report: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", help="folder for device_check.json and device_check.log")
    parser.add_argument("--backend", default="gpu", choices=sorted(PLATFORM_OF))
    parser.add_argument(
        "--sizes", choices=("full", "tiny"), help="default: tiny on cpu, full elsewhere"
    )
    parser.add_argument(
        "--budget", type=float, default=480.0, help="wall-clock seconds for all items"
    )
    parser.add_argument(
        "--wheels", default="device_wheels", help="wheel folder to install ('' for none)"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="the interpreter that runs the items"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated item names to run (default: all)"
    )
    parser.add_argument(
        "--item-limit",
        default="",
        help="NAME=SECONDS,...: these items' time limits instead of "
        "the plan's (a rerun of one item; a test of what a killed item leaves)",
    )
    parser.add_argument(
        "--jax-cache",
        default="",
        help="the items' persistent compilation cache (default: an empty one in the scratch "
        "folder, so first-step and compile figures are cold; CI's CPU dry run passes the tests' "
        "cache)",
    )
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe()
    if not args.out:
        parser.error("--out DIR is required (make device-check OUT=DIR)")
    try:
        limits = {
            k: float(v) for k, v in (kv.split("=", 1) for kv in args.item_limit.split(",") if kv)
        }
    except ValueError:
        parser.error(f"--item-limit takes NAME=SECONDS,..., got {args.item_limit!r}")
    started = time.monotonic()
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.log").unlink(missing_ok=True)
    log = Log(out / "device_check.log")
    sizes = args.sizes or ("tiny" if args.backend == "cpu" else "full")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="ddjax-device-check-")).resolve()
    report = {
        "schema": 2,
        "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "backend_requested": args.backend,
        "sizes": sizes,
        "budget_s": args.budget,
        "host": {
            "python": platform.python_version(),
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
        },
        "checks": [],
        "items": {},
        "figures": {},
        "plan": [],
    }
    report_path = out / "device_check.json"
    # One persistent compilation cache for every item (ddjax/compilation_cache.py reads JAX's own
    # variable).
    env = dict(
        os.environ,
        JAX_PLATFORMS=PLATFORM_OF[args.backend],
        DDJAX_DEVICE_BACKEND=args.backend,
        HF_HUB_OFFLINE="1",
        PYTHONUNBUFFERED="1",
        TF_CPP_MIN_LOG_LEVEL="2",
        JAX_COMPILATION_CACHE_DIR=args.jax_cache or str(scratch / "jax-compilation-cache"),
    )
    log.say(
        f"device check: backend {args.backend}, {sizes} sizes, budget {args.budget:.0f} s, log "
        f"{log.path}"
    )

    def check(name: str, result: dict) -> None:
        report["checks"].append(
            {
                "name": name,
                "pass": result.get("pass"),
                "seconds": round(result.get("seconds", 0), 1),
                **({"note": result["note"]} if result.get("note") else {}),
            }
        )

    if args.wheels:
        site = scratch / "site"
        install = install_wheels(args.python, pathlib.Path(args.wheels).resolve(), site, log)
        report["install"] = install
        check("install_wheels", install)
        log.say(
            f"install_wheels: {'pass' if install['pass'] else 'FAIL'} "
            f"{install.get('note', '')}".rstrip()
        )
        if install["pass"]:
            env["PYTHONPATH"] = os.pathsep.join(
                [str(site), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
            )
    write_report(report_path, report)
    only = {n for n in args.only.split(",") if n}
    deadline = started + args.budget
    for item in plan(sizes, args.python):
        if only and item.name not in only:
            continue
        left = deadline - time.monotonic()
        c, s, source = device_speed(report["items"])
        cap = min(limits.get(item.name, item.cap_s(c, s)), left)
        report["plan"].append(
            {
                "name": item.name,
                "limit_s": round(cap, 1),
                "expected_s": round(item.cost(c, s), 1),
                "from": f"C={c:.1f} s, S={s:.3f} s ({source})",
            }
        )
        if left < item.min_s:
            result = {
                "pass": None,
                "seconds": 0,
                "skipped": True,
                "note": f"skipped: {left:.0f} s of the budget left, it needs at least "
                f"{item.min_s:.0f} s",
            }
        else:
            result = run_item(item, env, cap, log, sizes, args.python, scratch)
        report["items"][item.name] = {"stage": item.stage, **result}
        check(item.name, result)
        if item.kind == "probe" and result.get("result"):
            report["versions"] = result["result"].get("versions")
            report["device"] = result["result"].get("device")
        report["figures"] = figures(report["items"])
        report["elapsed_s"] = round(time.monotonic() - started, 1)
        write_report(report_path, report)
        status = "skipped" if result.get("skipped") else ("pass" if result["pass"] else "FAIL")
        log.say(
            f"[{time.monotonic() - started:6.1f} s] {item.name}: {status} "
            f"({result.get('seconds', 0):.1f} s) "
            f"{result.get('note', '')}".rstrip()
        )
    report["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"
    )
    report["passed"] = all(c["pass"] is True for c in report["checks"])
    write_report(report_path, report)
    shutil.rmtree(scratch, ignore_errors=True)
    failed = [c["name"] for c in report["checks"] if c["pass"] is not True]
    log.say(
        f"device check: {len(report['checks']) - len(failed)} of {len(report['checks'])} checks "
        "passed"
        f"{'; not passed: ' + ', '.join(failed) if failed else ''}; report {report_path}"
    )
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
