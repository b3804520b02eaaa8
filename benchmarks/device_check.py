"""`make device-check OUT=DIR`: one prepared command that validates and measures ddjax on a device.

  python benchmarks/device_check.py --out DIR [--backend gpu|tpu|cpu] [--budget 420] [--wheels device_wheels]

Made for a bare, offline accelerator machine with its own Python 3.12 and JAX (the GPU image): it installs the
wheels of `make device-wheels` into a temporary site directory (`pip install --no-index --no-deps --target`,
then PYTHONPATH), and within a wall-clock budget runs, in this order, each in its own process with its own
time limit:

  a. environment (versions, devices, the kernels picked), the kernel tests with implementation='pallas' against
     the jnp references and numpy index for index at B in {32, 128} x N in {1024, 8192}, the model and
     zero-shot tests, all on the requested backend;
  b. benchmarks/kernels.py, model.py, train.py (base model, batch 128, float32 and bfloat16, one process per
     configuration so that the device's peak memory is exact), zeroshot.py and attacks.py (PGD-50, N = 8);
  c. the real trainer end to end through main.py: the base model at batch 128 on the synthetic set (prepared on
     the fly, with its tiny CLIP teacher) for half the steps, a checkpoint, a resumed run to the full count,
     then the zero-shot job on the result.

An item that does not fit in what is left of the budget is skipped with a note. DIR receives exactly two files,
rewritten after every item so that a killed run keeps what finished: `device_check.json` (versions, device,
every figure, `checks`: a list of {name, pass, seconds}, and each item's full result) and `device_check.log`
(every command's complete output). With --backend cpu the sizes are tiny (`--sizes tiny`, the default there):
that is the same command run by CI, so it cannot rot between GPU runs. Exit status 0 when every check that ran
passed and none was skipped for want of time.

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
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLATFORM_OF = {"gpu": "cuda", "tpu": "tpu", "cpu": "cpu"}  # --backend -> JAX_PLATFORMS
PACKAGES = ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda12-plugin", "libtpu", "flax", "optax", "orbax-checkpoint",
            "numpy", "ml_collections", "transformers", "huggingface-hub", "tokenizers", "grain", "array-record",
            "tensorflow-datasets", "tensorflow-metadata", "protobuf", "etils", "scipy", "fpsample", "pytest")
IMPORTS = ("jax", "flax", "optax", "orbax.checkpoint", "numpy", "ml_collections", "grain", "array_record",
           "tensorflow_datasets", "fpsample", "scipy", "pytest", "ddjax.train", "ddjax.robustness", "kernels")


@dataclasses.dataclass
class Item:
    name: str
    stage: str  # a: validate, b: benchmark, c: end to end
    min_s: float  # not started with less than this left
    cap_s: float  # its own time limit (also bounded by what is left)
    argv: list[str] | None = None  # one command, parsed by `kind`
    kind: str = "json"  # json: a benchmark's --json output; pytest; probe; e2e
    env: dict[str, str] = dataclasses.field(default_factory=dict)


# --------------------------------------------------------------------------------------------- the plan
def plan(sizes: str, python: str) -> list[Item]:
    """What runs, in order, for the `full` (accelerator) or `tiny` (CPU CI) sizes."""
    bench = lambda script, *args: [python, f"benchmarks/{script}.py", "--json", *args]
    pytest = lambda *args: [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "addopts=", *args]
    kernel_tests = ["tests/test_kernels_exact.py", "tests/test_fps.py", "tests/test_knn.py", "tests/test_backend.py",
                    "tests/test_gpu_lowering.py", "tests/test_validation.py"]
    probe = Item("environment", "a", 5, 90, [python, "benchmarks/device_check.py", "--probe"], kind="probe")
    if sizes == "full":
        items = [
            probe,
            Item("kernel_tests", "a", 20, 120, pytest(*kernel_tests), kind="pytest",
                 env={"DDJAX_KERNEL_SIZES": "32x1024,128x1024,32x8192,128x8192"}),
            Item("model_tests", "a", 30, 150, pytest("tests/test_model.py", "tests/test_pointcloud.py",
                                                     "tests/test_losses.py", "tests/test_zeroshot.py"), kind="pytest"),
            Item("bench_kernels", "b", 15, 60, bench("kernels")),
            Item("bench_model", "b", 30, 100, bench("model", "--paths=1,8")),
        ]
        items += [Item(f"bench_train_{mode}_{dtype}", "b", 30, 90,
                       bench("train", "--batches=128", f"--dtypes={dtype}", f"--modes={mode}"))
                  for mode, dtype in (("online", "float32"), ("online", "bfloat16"), ("cached", "float32"),
                                      ("cached", "bfloat16"))]
        items += [
            Item("bench_zeroshot", "b", 20, 75, bench("zeroshot")),
            Item("bench_attacks", "b", 30, 120, bench("attacks")),
            Item("trainer_e2e", "c", 60, 240, kind="e2e"),
        ]
        return items
    return [
        probe,
        Item("kernel_tests", "a", 10, 120, pytest(*kernel_tests[:2], "tests/test_backend.py"), kind="pytest",
             env={"DDJAX_KERNEL_SIZES": "2x256,2x1024"}),
        Item("model_tests", "a", 10, 120, pytest("tests/test_model.py", "-k", "timesteps_merge or not_zero_init"),
             kind="pytest"),
        Item("bench_kernels", "b", 5, 60, bench("kernels", "--sizes=4x256x16x8", "--repeats=2")),
        Item("bench_model", "b", 10, 120, bench("model", "--variant=tiny", "--batch=4", "--points=256",
                                                 "--paths=1,2", "--repeats=1")),
        Item("bench_train_online_float32", "b", 10, 120,
             bench("train", "--variant=tiny", "--batches=8", "--points=256", "--clip=tiny", "--dtypes=float32",
                   "--modes=online", "--repeats=1")),
        Item("bench_train_cached_bfloat16", "b", 10, 120,
             bench("train", "--variant=tiny", "--batches=8", "--points=256", "--dtypes=bfloat16", "--modes=cached",
                   "--repeats=1")),
        Item("bench_zeroshot", "b", 5, 60, bench("zeroshot", "--variant=tiny", "--batch=4", "--points=256",
                                                  "--paths=1,2", "--repeats=1")),
        Item("bench_attacks", "b", 10, 120, bench("attacks", "--variant=tiny", "--batch=2", "--points=256",
                                                   "--paths=2")),
        Item("trainer_e2e", "c", 20, 300, kind="e2e"),
    ]


def e2e_commands(sizes: str, python: str, scratch: pathlib.Path) -> tuple[list[tuple[str, list[str]]], int]:
    """The trainer end to end: first half (checkpoint), resumed second half, zero-shot job; and the step at
    which the second run resumes."""
    run_dir, tfds_dir, zs_dir = scratch / "run", scratch / "tfds", scratch / "zeroshot"
    if sizes == "full":
        dataset, steps, every = "synthetic_shapes", 200, 100
        train = ["--config=configs/pretrain.py:smoke,variant=base", "--config.batch_size=128",
                 "--config.worker_count=4", "--config.log_every=10"]
        zs = ["--config.npoints=1024", "--config.point_all=1200"]
    else:
        dataset, steps, every = "synthetic_shapes/tiny", 4, 2
        train = ["--config=configs/pretrain.py:smoke", "--config.batch_size=8", "--config.log_every=1",
                 "--config.tiny_teacher.steps=5"]
        zs = ["--config.batch_size=8"]
    # The trainer's own end-of-run evaluation is off (it would compile and run twice): the zero-shot job scores.
    common = [f"--workdir={run_dir}", f"--config.dataset={dataset}", f"--config.data_dir={tfds_dir}",
              "--config.eval.dataset=", f"--config.checkpoint_every={every}"]
    main = [python, "main.py"]
    return [
        ("first_half", main + train + common + [f"--config.total_steps={every}"]),
        ("resume", main + train + common + [f"--config.total_steps={steps}", "--config.allow_changes=total_steps"]),
        ("zeroshot_job", main + ["--config=configs/zeroshot.py:smoke", f"--config.checkpoint={run_dir}",
                                 f"--config.dataset={dataset}", f"--config.data_dir={tfds_dir}",
                                 f"--workdir={zs_dir}"] + zs),
    ], every


# ------------------------------------------------------------------------------------------ running
class Log:
    """The full log in OUT/device_check.log; one progress line per item on the console."""

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.file = open(path, "a", buffering=1)

    def say(self, line: str) -> None:
        print(line, flush=True)
        self.file.write(line + "\n")


def run_command(argv: list[str], env: dict[str, str], timeout: float, log: Log) -> tuple[int | None, str, float]:
    """Runs argv in its own process group with `timeout`; returns (exit code or None on timeout, stdout, s).
    stderr goes to the log as it comes; stdout is captured and logged too."""
    log.file.write(f"\n$ {' '.join(argv)}\n")
    log.file.flush()
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=log.file, start_new_session=True)
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
    log.file.write(f"[exit {code if code is not None else 'killed: over its time limit'} after {seconds:.1f} s]\n")
    log.file.flush()
    return code, stdout, seconds


def parse_json(stdout: str):
    """The first JSON object printed on a line of its own (the benchmarks print nothing else with --json)."""
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("{"):
            try:
                return json.loads("\n".join(lines[i:]))
            except json.JSONDecodeError:
                continue
    return None


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
            skipped.append({"test": name, "reason": (case.find("skipped").get("message") or "")[:200]})
        else:
            passed += 1
    return {"passed": passed, "failed": failed, "skipped": skipped}


def run_item(item: Item, env: dict[str, str], timeout: float, log: Log, sizes: str, python: str,
             scratch: pathlib.Path) -> dict:
    """Runs one item; returns {pass, seconds, result, note}."""
    env = {**env, **item.env}
    if item.kind == "e2e":
        return run_e2e(env, timeout, log, sizes, python, scratch)
    argv = list(item.argv)
    junit = scratch / f"{item.name}.xml"
    if item.kind == "pytest":
        argv += [f"--junitxml={junit}"]
    code, stdout, seconds = run_command(argv, env, timeout, log)
    out = {"seconds": seconds, "exit": code}
    if code is None:
        return {**out, "pass": False, "note": f"killed at its time limit of {timeout:.0f} s"}
    if item.kind == "pytest":
        if not junit.is_file():
            return {**out, "pass": False, "note": "pytest wrote no report"}
        result = parse_junit(junit)
        note = f"{result['passed']} passed, {len(result['failed'])} failed, {len(result['skipped'])} skipped"
        return {**out, "pass": code == 0 and not result["failed"], "result": result, "note": note}
    result = parse_json(stdout)
    if result is None:
        return {**out, "pass": False, "note": "printed no JSON (see the log: `benchmark error` names the cause)"}
    ok = code == 0 and (item.kind != "probe" or result.get("ok", False))
    return {**out, "pass": ok, "result": result, "note": result.get("problem", "") if item.kind == "probe" else ""}


def run_e2e(env: dict[str, str], timeout: float, log: Log, sizes: str, python: str, scratch: pathlib.Path) -> dict:
    deadline = time.monotonic() + timeout
    scratch = scratch / "e2e"
    shutil.rmtree(scratch, ignore_errors=True)
    steps, result = {}, {}
    commands, resume_step = e2e_commands(sizes, python, scratch)
    for name, argv in commands:
        left = deadline - time.monotonic()
        if left < 5:
            return {"pass": False, "seconds": timeout, "result": result, "note": f"no time left for {name}"}
        code, stdout, seconds = run_command(argv, env, left, log)
        steps[name] = {"exit": code, "seconds": seconds}
        result["steps"] = steps
        if code != 0:
            why = "killed at the item's time limit" if code is None else f"exit {code}"
            return {"pass": False, "seconds": sum(s["seconds"] for s in steps.values()), "result": result,
                    "note": f"{name}: {why} (see the log)"}
        if name == "resume" and f"resumed from {scratch / 'run' / 'checkpoints' / str(resume_step)}" not in stdout:
            return {"pass": False, "seconds": sum(s["seconds"] for s in steps.values()), "result": result,
                    "note": f"the second run did not resume from the first run's checkpoint {resume_step}"}
    run_dir = scratch / "run"
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    config = json.loads((run_dir / "config.json").read_text())
    zs = json.loads((scratch / "zeroshot" / "zeroshot.json").read_text())
    total = config["resolved"]["total_steps"]
    rates = [m["steps_per_sec"] for m in metrics if m.get("steps_per_sec")]
    result.update({
        "total_steps": total, "batch_size": config["batch_size"], "model_width": config["model"]["width"],
        "last_step": metrics[-1]["step"] if metrics else None, "final_loss": metrics[-1]["loss"] if metrics else None,
        "steps_per_sec_median": sorted(rates)[len(rates) // 2] if rates else None,
        "samples_per_sec_median": (sorted(rates)[len(rates) // 2] * config["batch_size"]) if rates else None,
        "checkpoints": sorted(int(p.name) for p in (run_dir / "checkpoints").iterdir() if p.name.isdigit()),
        "zeroshot_top1": zs.get("top1"), "zeroshot_top5": zs.get("top5"), "zeroshot_samples": zs.get("num_samples"),
    })
    ok = (result["last_step"] == total and total in result["checkpoints"]
          and all(map(_finite, [m["loss"] for m in metrics])) and zs.get("top1") is not None)
    rate = result["samples_per_sec_median"]
    note = (f"{total} steps of batch {config['batch_size']} (width {config['model']['width']}), resumed at step "
            f"{resume_step}, {rate if rate is None else round(rate, 1)} samples/s, zero-shot top-1 "
            f"{zs.get('top1') if zs.get('top1') is None else round(zs['top1'], 3)}")
    return {"pass": ok, "seconds": sum(s["seconds"] for s in steps.values()), "result": result, "note": note}


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and x == x and abs(x) != float("inf")


# ------------------------------------------------------------------------------------------ figures
def figures(items: dict) -> dict:
    """The headline numbers, flat, for the README's tables (None where not measured)."""
    f = {}
    kern = items.get("bench_kernels", {}).get("result") or {}
    for r in kern.get("results", []):
        f[f"{r['op']}_{r['implementation']}_ms_B{r['B']}_N{r['N']}"] = r["ms"]
    model = items.get("bench_model", {}).get("result") or {}
    if model:
        f[f"model_train_step_s_b{model.get('batch')}"] = model.get("train_step_s")
        f[f"model_forward_s_b{model.get('batch')}"] = model.get("forward_s")
        for r in model.get("inference", []):
            f[f"model_infer_shapes_per_s_t{r['t']}_N{r['N']}"] = r["shapes_per_s"]
    for name, item in items.items():
        if name.startswith("bench_train_") and item.get("result"):
            for r in item["result"]["results"]:
                key = f"train_{r['mode']}_{r['dtype']}_b{r['batch']}"
                for field in ("step_s", "samples_per_s", "mfu", "device_peak_bytes", "xla_peak_bytes",
                              "paper_run_hours"):
                    f[f"{key}_{field}"] = r.get(field)
    zs = items.get("bench_zeroshot", {}).get("result") or {}
    for r in zs.get("results", []):
        f[f"zeroshot_shapes_per_s_t{r['t']}_N{r['N']}"] = r["shapes_per_s"]
    att = items.get("bench_attacks", {}).get("result") or {}
    for r in att.get("results", []):
        f[f"attack_pgd50_{r['mode']}_shapes_per_s"] = r["shapes_per_s"]
        f[f"attack_pgd50_{r['mode']}_seconds_per_batch"] = r["seconds_50_steps"]
    e2e = items.get("trainer_e2e", {}).get("result") or {}
    for field in ("steps_per_sec_median", "samples_per_sec_median", "zeroshot_top1", "final_loss"):
        if field in e2e:
            f[f"trainer_{field}"] = e2e[field]
    return f


# ------------------------------------------------------------------------------------------ install
def install_wheels(python: str, wheels: pathlib.Path, site: pathlib.Path, log: Log) -> dict:
    files = sorted(wheels.glob("*.whl"))
    manifest = wheels / "MANIFEST.json"
    info = {"wheels_dir": str(wheels), "site": str(site), "wheels": len(files)}
    if not files:
        return {**info, "pass": False, "note": f"no wheels in {wheels} (run `make device-wheels` where PyPI is reachable)"}
    if manifest.is_file():
        listed = {w["file"] for w in json.loads(manifest.read_text())["wheels"]}
        if listed != {p.name for p in files}:
            return {**info, "pass": False, "note": f"{wheels} does not match its MANIFEST.json: run make device-wheels"}
    code, _, seconds = run_command([python, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                                    "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                                    *map(str, files)], dict(os.environ), 300, log)
    return {**info, "pass": code == 0, "seconds": seconds, "note": "" if code == 0 else "pip install failed (see the log)"}


# ------------------------------------------------------------------------------------------ probe
def probe() -> int:
    """Runs in the child: versions, imports, requirement conflicts among what is installed, devices, kernels."""
    import importlib
    import importlib.metadata as md

    sys.path.insert(0, str(ROOT))  # the repository before benchmarks/ (whose kernels.py shadows the package)
    result = {"python": platform.python_version(), "executable": sys.executable, "versions": {}, "imports": {},
              "requirement_conflicts": []}
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
        result["device"] = {"backend": jax.default_backend(), "platform": backend.platform(),
                            "kind": devices[0].device_kind, "count": len(devices), "describe": backend.describe(),
                            "memory_bytes": (devices[0].memory_stats() or {}).get("bytes_limit")
                            if hasattr(devices[0], "memory_stats") else None}
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
    """Declared requirements of the installed packages ddjax uses that the installed versions do not meet."""
    import importlib.metadata as md
    try:
        from packaging.requirements import Requirement
    except ImportError:
        return ["(packaging not installed: not checked)"]
    roots = ("transformers", "grain", "tensorflow-datasets", "tensorflow-metadata", "array-record", "flax", "optax",
             "orbax-checkpoint", "ml_collections", "huggingface-hub", "googleapis-common-protos")
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="folder for device_check.json and device_check.log")
    parser.add_argument("--backend", default="gpu", choices=sorted(PLATFORM_OF))
    parser.add_argument("--sizes", choices=("full", "tiny"), help="default: tiny on cpu, full elsewhere")
    parser.add_argument("--budget", type=float, default=420.0, help="wall-clock seconds for all items")
    parser.add_argument("--wheels", default="device_wheels", help="wheel folder to install ('' for none)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the items")
    parser.add_argument("--only", default="", help="comma-separated item names to run (default: all)")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.probe:
        return probe()
    if not args.out:
        parser.error("--out DIR is required (make device-check OUT=DIR)")
    started = time.monotonic()
    out = pathlib.Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "device_check.log").unlink(missing_ok=True)
    log = Log(out / "device_check.log")
    sizes = args.sizes or ("tiny" if args.backend == "cpu" else "full")
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="ddjax-device-check-")).resolve()
    report = {
        "schema": 1, "started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv, "backend_requested": args.backend, "sizes": sizes, "budget_s": args.budget,
        "host": {"python": platform.python_version(), "cpu_count": os.cpu_count(), "machine": platform.machine()},
        "checks": [], "items": {}, "figures": {},
    }
    report_path = out / "device_check.json"
    env = dict(os.environ, JAX_PLATFORMS=PLATFORM_OF[args.backend], DDJAX_DEVICE_BACKEND=args.backend,
               HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
    log.say(f"device check: backend {args.backend}, {sizes} sizes, budget {args.budget:.0f} s, log {log.path}")

    def check(name: str, result: dict) -> None:
        report["checks"].append({"name": name, "pass": result.get("pass"), "seconds": round(result.get("seconds", 0), 1),
                                 **({"note": result["note"]} if result.get("note") else {})})

    if args.wheels:
        site = scratch / "site"
        install = install_wheels(args.python, pathlib.Path(args.wheels).resolve(), site, log)
        report["install"] = install
        check("install_wheels", install)
        log.say(f"install_wheels: {'pass' if install['pass'] else 'FAIL'} {install.get('note', '')}".rstrip())
        if install["pass"]:
            env["PYTHONPATH"] = os.pathsep.join([str(site), str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    write_report(report_path, report)
    only = {n for n in args.only.split(",") if n}
    deadline = started + args.budget
    for item in plan(sizes, args.python):
        if only and item.name not in only:
            continue
        left = deadline - time.monotonic()
        if left < item.min_s:
            result = {"pass": None, "seconds": 0, "skipped": True,
                      "note": f"skipped: {left:.0f} s of the budget left, it needs at least {item.min_s:.0f} s"}
        else:
            result = run_item(item, env, min(item.cap_s, left), log, sizes, args.python, scratch)
        report["items"][item.name] = {"stage": item.stage, **result}
        check(item.name, result)
        if item.kind == "probe" and result.get("result"):
            report["versions"] = result["result"].get("versions")
            report["device"] = result["result"].get("device")
        report["figures"] = figures(report["items"])
        report["elapsed_s"] = round(time.monotonic() - started, 1)
        write_report(report_path, report)
        status = "skipped" if result.get("skipped") else ("pass" if result["pass"] else "FAIL")
        log.say(f"[{time.monotonic() - started:6.1f} s] {item.name}: {status} ({result.get('seconds', 0):.1f} s) "
                f"{result.get('note', '')}".rstrip())
    report["finished_utc"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    report["passed"] = all(c["pass"] is True for c in report["checks"])
    write_report(report_path, report)
    shutil.rmtree(scratch, ignore_errors=True)
    failed = [c["name"] for c in report["checks"] if c["pass"] is not True]
    log.say(f"device check: {len(report['checks']) - len(failed)} of {len(report['checks'])} checks passed"
            f"{'; not passed: ' + ', '.join(failed) if failed else ''}; report {report_path}")
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
