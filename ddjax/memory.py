"""Device memory, checked before anything compiles: what one device holds (`device_bytes`), a lower
bound of what an inference setting holds at once (`inference_bytes`), and `check_fits`, which
refuses a setting whose lower bound exceeds the device with both numbers in one line.

Without it a setting such as `--config.num_paths=1000000000` compiles for minutes and then dies in
the runtime. The bound counts only buffers XLA cannot fuse away, so a setting that fits is never
refused: the per-path outputs [N, B, k, D] (a matmul's result, averaged afterwards) and, for
the clouds one step evaluates together, the encoder states of every layer (depth, G, width), the
stacked output of the scanned encoder, which the feature branch reads. Points, groups and the
mini-PointNet's activations are left out: XLA fuses the noise and the gathers into their consumers
(tests/test_memory.py compares the bound with XLA's own memory analysis).
"""

from __future__ import annotations

import os

import jax

from ddjax.errors import ConfigError
from ddjax.models import dual_denoising


def value_bytes(model: dict) -> int:
    """Bytes per activation: 2 for a bfloat16 model, else 4."""
    return 2 if model.get("dtype") == "bfloat16" else 4


def device_bytes() -> tuple[int, str]:
    """(bytes one local device can allocate, what that memory is): the accelerator's limit, or the
    host's physical memory on CPU (where memory_stats is None)."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"]), f"the {device.device_kind}'s memory"
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "this host's memory (CPU)"


def cloud_bytes(model: dict) -> int:
    """A lower bound of the bytes one cloud's encoder pass holds: its encoder states
    (depth, G, width)."""
    size = lambda key: int(model.get(key) or 0)
    return value_bytes(model) * size("depth") * size("num_groups") * size("width")


def inference_bytes(model: dict, batch: int, num_paths: int, clouds_at_once: int) -> int:
    """A lower bound of the bytes `infer` holds for `batch` clouds of one device at `num_paths`
    paths, `clouds_at_once` (paths x clouds evaluated together) of them in one step."""
    types = len(model.get("feature_types") or ("image",))
    outputs = num_paths * batch * types * int(model.get("teacher_dim") or 0)  # f32[N, B, k, D]
    return value_bytes(model) * outputs + clouds_at_once * cloud_bytes(model)


def gib(nbytes: float) -> str:
    """Bytes as a short human figure: '3.2 GiB', '1.2e+05 TiB'."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if nbytes >= size:
            value = nbytes / size
            return f"{value:.3g} {unit}" if value < 1e4 else f"{value:.2g} {unit}"
    return f"{nbytes / 2**10:.3g} KiB"


def check_fits(key: str, what: str, need: int, todo: str) -> None:
    """ConfigError naming config.<key> when `need` bytes (a lower bound for `what`) exceed one
    device's memory."""
    have, where = device_bytes()
    if need > have:
        raise ConfigError(
            key,
            f"{what} holds at least {gib(need)} at once (a lower bound: the per-path outputs and "
            f"the encoder states of the clouds evaluated together), more than the {gib(have)} of "
            f"{where}",
            todo,
        )


def check_inference(
    model: dict,
    *,
    batch: int,
    num_paths: int,
    t: int,
    keys: tuple[str, str] = ("num_paths", "batch_size"),
) -> None:
    """check_fits for an inference of `batch` clouds (the whole batch, dealt out over every
    device) at (num_paths, t): at t = 0 the encoder runs once for every path (spec D8), else
    `default_paths_per_step()` paths (None: all) are evaluated together. `keys` name the config's
    path count and batch."""
    per_device = -(-batch // jax.device_count())
    paths_per_step = dual_denoising.default_paths_per_step()
    step = 1 if t == 0 else min(num_paths, paths_per_step or num_paths)
    need = inference_bytes(model, per_device, num_paths, per_device * step)
    check_fits(
        keys[0],
        f"N={num_paths} noise paths at t={t} for {per_device} clouds per device",
        need,
        f"lower config.{keys[0]} or config.{keys[1]}",
    )
