"""Portability benchmark: the same programs, the same seeded inputs, on the current backend, against
the CPU float32 reference values committed in benchmarks/results/portability-cpu.json.

  python benchmarks/portability.py --json              # about a minute on a 2-core CPU
  python benchmarks/portability.py --write-reference   # CPU only: makes the reference file

The programs are ddjax/portability.py's, on the tiny model (random weights made on the CPU, so every
backend starts from the same bits): the trainer's step for 20 steps (its loss at each step), the
zero-shot function (N = 8, t = 600; its logits and top-1 on a fixed batch) and the gradient one PGD
step takes the sign of. Each is compared with the reference as the largest absolute difference and
the largest one relative to the reference's largest magnitude, and judged against the tolerance of
each precision (`TOLERANCE`, normwise relative): float32 (another CPU or XLA version), TF32 (a GPU's
float32 matmuls under JAX's default precision) and bfloat16. Also measured: the train step's time,
the three programs' compile seconds and the device's peak memory. `pass`: on the CPU that made the
reference (the same processor and jax version) every value equal bit for bit (`exact`); elsewhere
every difference within the tolerance of the backend's default float32 precision (CPU float32, GPU
TF32, TPU bfloat16); top-1 is reported (`differ`: clouds whose class changed), not judged.

With --json one line per measurement as soon as it exists, then the summary line. Always exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import common  # noqa: E402
from ddjax import portability, train  # noqa: E402
from ddjax.models import dual_denoising as dd  # noqa: E402
from ddjax.models import registry  # noqa: E402
from ddjax.teachers import cache  # noqa: E402

REFERENCE = pathlib.Path(__file__).resolve().parent / "results" / "portability-cpu.json"
# normwise relative tolerance of each precision: max |x - ref| / max |ref|
TOLERANCE = {"float32": 1e-4, "tf32": 1e-2, "bfloat16": 5e-2}
SETTINGS = dict(variant="tiny", batch=4, points=256, steps=20, zeroshot_batch=8, classes=12)
NUM_PATHS, T = 8, 600


def weights_device():
    """Where the weights are made: the CPU device, or the default one where JAX_PLATFORMS leaves no
    CPU backend (`weights_made_on` in the summary says which)."""
    try:
        return jax.devices("cpu")[0]
    except RuntimeError:
        return jax.devices()[0]


def on_cpu(fn, *args):
    """fn(*args) computed on `weights_device()`, then placed on the default device."""
    with jax.default_device(weights_device()):
        out = jax.jit(fn)(*args)
    return jax.device_put(out, jax.devices()[0])


def inputs(config, settings: dict) -> dict:
    """Every input, from seeds: numpy for the data, the CPU for the weights and the first state."""
    rng = np.random.default_rng(0)
    b, p, c, d = settings["batch"], settings["points"], settings["classes"], config.teacher_dim
    clouds = rng.normal(size=(settings["steps"], b, p, 3)).astype(np.float32)
    clouds /= np.linalg.norm(clouds, axis=-1).max(axis=-1)[..., None, None]  # unit ball
    tx, _ = portability.optimizer()
    return {
        "state": on_cpu(lambda k: train.create_train_state(config, tx, k), jax.random.key(0)),
        "clouds": clouds,  # (steps, B, P, 3)
        "labels": rng.integers(0, c, size=(settings["steps"], b)).astype(np.int32),
        "prompts": rng.integers(0, 3 * cache.NUM_PREFIXES, size=(settings["steps"], b)).astype(
            np.int32
        ),
        "text_bank": rng.normal(size=(c, cache.NUM_PREFIXES, 3, d)).astype(np.float32),
        "image_bank": rng.normal(size=(b, 1, d)).astype(np.float32),
        "variables": on_cpu(lambda k: registry.init_variables(config, k), jax.random.key(1)),
        "text": rng.normal(size=(c, d)).astype(np.float32),
        "eval_clouds": clouds[0].repeat(settings["zeroshot_batch"] // b, axis=0),  # (Bz, P, 3)
        "targets": rng.integers(0, c, size=(b,)).astype(np.int32),
    }


def compiled(fn, *args):
    """(the compiled program, lower + compile seconds)."""
    start = time.perf_counter()
    program = jax.jit(fn).lower(*args).compile()
    return program, time.perf_counter() - start


def measure(settings: dict = SETTINGS, as_json: bool = False) -> dict:
    """The values (losses, logits, top-1, gradient) and the costs on the current backend."""
    config = dd.model_config(settings["variant"])
    x = inputs(config, settings)
    b, p, c = settings["batch"], settings["points"], settings["classes"]
    step_fn, _ = portability.train_program(config, batch=b, points=p, classes=c)
    batch = lambda i: {
        "points": x["clouds"][i],
        "record": np.arange(b, dtype=np.int32),
        "view": np.zeros(b, np.int32),
        "label": x["labels"][i],
        "prompt": x["prompts"][i],
    }
    banks = (None, x["text_bank"], x["image_bank"])
    key = jax.random.key(2)
    step, compile_train = compiled(step_fn, x["state"], batch(0), banks, key)
    state, losses, times = x["state"], [], []
    for i in range(settings["steps"]):
        start = time.perf_counter()
        state, metrics = step(state, batch(i), banks, key)
        losses.append(float(metrics["loss"]))  # waits for the step
        times.append(time.perf_counter() - start)
    costs = {"compile_s": {"train_step": compile_train}, "step_s": float(np.median(times[1:]))}
    common.emit({"what": "train", "losses": losses, "step_s": costs["step_s"]}, as_json)
    zs_fn, _ = portability.zeroshot_program(
        config, batch=len(x["eval_clouds"]), points=p, num_paths=NUM_PATHS, t=T, classes=c
    )
    zs_args = (x["variables"], x["eval_clouds"], jax.random.key(3), x["text"])
    zs, costs["compile_s"]["zeroshot"] = compiled(zs_fn, *zs_args)
    logits = np.asarray(zs(*zs_args)[0])
    common.emit({"what": "zeroshot", "top1": logits.argmax(1).tolist()}, as_json)
    grad_fn, _ = portability.attack_gradient_program(
        config, batch=b, points=p, num_paths=NUM_PATHS, t=T, classes=c
    )
    grad_args = (x["variables"], x["text"], x["clouds"][0], x["targets"], jax.random.key(4))
    grad, costs["compile_s"]["attack_gradient"] = compiled(grad_fn, *grad_args)
    gradient = np.asarray(grad(*grad_args))
    costs["peak_bytes"] = common.device_peak_bytes()
    common.emit({"what": "costs", **costs}, as_json)
    return {
        "values": {
            "train_losses": losses,
            "zeroshot_logits": logits.tolist(),
            "zeroshot_top1": logits.argmax(1).tolist(),
            "attack_gradient": gradient.tolist(),
        },
        "costs": costs,
    }


def fingerprint() -> dict:
    """What decides whether CPU results can be bit for bit equal: the processor and jax."""
    model = ""
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                model += line.split(":", 1)[1].strip() + "\n"
    except OSError:
        model = common.machine()["processor"]
    return {"backend": jax.default_backend(), "jax": jax.__version__, "cpu": model.strip()}


def compare(values: dict, reference: dict) -> dict:
    """Per quantity: max_abs, max_rel (normwise) and the precisions whose tolerance it meets; top-1
    as the number of clouds whose class differs; `exact` when every value equals the reference."""
    out = {}
    for name, ref in reference.items():
        got, want = np.asarray(values[name], np.float64), np.asarray(ref, np.float64)
        if name == "zeroshot_top1":
            out[name] = {"differ": int((got != want).sum())}
            continue
        diff = float(np.max(np.abs(got - want)))
        rel = diff / max(float(np.max(np.abs(want))), 1e-30)
        out[name] = {
            "max_abs": diff,
            "max_rel": rel,
            "within": [p for p, tol in TOLERANCE.items() if rel <= tol],
        }
    out["exact"] = all(
        np.array_equal(np.asarray(values[k]), np.asarray(v)) for k, v in reference.items()
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--write-reference", action="store_true")
    parser.add_argument("--reference", default=str(REFERENCE))
    args = parser.parse_args()
    if args.write_reference and jax.default_backend() != "cpu":
        parser.error("--write-reference makes the CPU reference: run it with JAX_PLATFORMS=cpu")
    result = measure(SETTINGS, args.json)
    if args.write_reference:
        record = {"settings": SETTINGS, "machine": fingerprint(), "values": result["values"]}
        pathlib.Path(args.reference).write_text(json.dumps(record) + "\n")
        print(f"wrote {args.reference}", flush=True)
        return 0
    reference = json.loads(pathlib.Path(args.reference).read_text())
    comparison = compare(result["values"], reference["values"])
    same_cpu = reference["machine"] == fingerprint()
    for name, row in comparison.items():
        if name != "exact":
            common.emit({"what": "difference", "quantity": name, **row}, args.json)
    # what a backend's default precision allows: CPU float32; a GPU's float32 matmuls run as TF32;
    # a TPU's as bfloat16 passes
    precision = {"cpu": "float32", "gpu": "tf32", "tpu": "bfloat16"}.get(
        jax.default_backend(), "float32"
    )
    floats = [row for k, row in comparison.items() if k not in ("exact", "zeroshot_top1")]
    passed = comparison["exact"] if same_cpu else all(precision in row["within"] for row in floats)
    common.summary(
        {
            "benchmark": "portability",
            "machine": common.machine(),
            "reference_machine": reference["machine"],
            "same_cpu_as_reference": same_cpu,
            "weights_made_on": weights_device().platform,
            "comparison": comparison,
            "precision": precision,
            "costs": result["costs"],
            "pass": bool(passed),
        }
    )
    return 0


if __name__ == "__main__":
    common.run(main)
