"""The one place that decides which implementation runs on which platform, and how Pallas is
configured.

Defaults (``implementation=None``), chosen from ``benchmarks/kernels.py`` (see README, "Kernel
benchmark"):

| op  | cpu   | cuda, rocm | tpu                                                    |
|-----|-------|------------|--------------------------------------------------------|
| fps | xla   | pallas     | xla (pallas_tpu, exact in interpret mode, not measured) |
| knn | xla   | xla        | xla                                                    |

The default is chosen inside the traced program (`dispatch`: one primitive lowered per platform):
one program lowered for several platforms (``jax.export`` with ``platforms=("cpu", "cuda",
"tpu")``) carries each platform's kernel, and the platform it is compiled for runs its own.
On CPU the Pallas kernels only run in interpret mode, which is a correctness tool, not a fast
path. On GPU, FPS is a sequential loop of ``num_samples`` dependent steps: one Pallas program per
cloud keeps the whole loop inside a single kernel, where XLA launches several kernels per step
(measured 4.6-4.8x faster than XLA on an H200, exact). kNN on GPU is a brute-force distance
matrix plus ``lax.top_k``, which XLA does well; the Pallas kNN kernel is kept as an alternative.
The TPU FPS kernel (Mosaic: each cloud in VMEM, the whole loop in one kernel) equals numpy index
for index in Pallas's TPU interpreter and lowers to Mosaic for TPU from any machine; it stays off
by default until a TPU measures it faster than XLA's loop: then set ``"tpu": "pallas_tpu"`` here.

JAX >= 0.11 deprecates Pallas' Triton lowering in favour of Mosaic GPU; the Triton compiler
parameters are built here and nowhere else, so moving to Mosaic GPU touches only this file.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.extend as jex
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.interpreters import batching, mlir

# 'pallas': the platform's own kernel (Triton on GPU, Mosaic on TPU); 'pallas_interpret': the GPU
# kernel in Pallas's interpreter; 'pallas_tpu' / 'pallas_tpu_interpret': the TPU kernel compiled,
# or in Pallas's TPU interpreter (FPS only)
IMPLEMENTATIONS = ("xla", "pallas", "pallas_interpret", "pallas_tpu", "pallas_tpu_interpret")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # the names jax.export uses

_DEFAULTS = {
    "fps": {"cpu": "xla", "cuda": "pallas", "rocm": "pallas", "tpu": "xla"},
    "knn": {"cpu": "xla", "cuda": "xla", "rocm": "xla", "tpu": "xla"},
}
_TPU_KERNELS = ("fps",)  # the ops with a TPU kernel


def platform() -> str:
    """'cpu', 'gpu' or 'tpu' for the default backend ('cuda'/'rocm' count as 'gpu')."""
    name = jax.default_backend()
    return "gpu" if name in ("gpu", "cuda", "rocm") else name


def default(op: str, lowering_platform: str) -> str:
    """The default implementation of `op` on a platform named as jax.export names it."""
    return _DEFAULTS[op].get(lowering_platform, "xla")


def lowering_platform() -> str:
    """The default backend named as jax.export names platforms: 'cpu', 'cuda' (any GPU) or
    'tpu'."""
    return {"gpu": "cuda"}.get(platform(), platform())


def _current_default(op: str) -> str:
    return default(op, lowering_platform())


def resolve(op: str, implementation: str | None) -> str:
    """The implementation to run for `op` on the default backend, validating a forced choice (None:
    the default; `dispatch` picks it inside the program)."""
    if implementation is None:
        return _current_default(op)
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(
            f"{op}: implementation must be one of {IMPLEMENTATIONS} or None, got {implementation!r}"
        )
    if implementation.startswith("pallas_tpu") and op not in _TPU_KERNELS:
        raise ValueError(f"{op}: there is no TPU kernel; use 'xla' or 'pallas_interpret'")
    if implementation == "pallas_tpu" and platform() != "tpu":
        raise ValueError(
            f"{op}: implementation='pallas_tpu' compiles the Mosaic kernel and needs a TPU backend "
            f"(this one is {jax.default_backend()!r}); use 'pallas_tpu_interpret' to run the same "
            "kernel on CPU"
        )
    if implementation == "pallas":
        if platform() == "tpu" and op in _TPU_KERNELS:
            return "pallas_tpu"
        if platform() != "gpu":
            raise ValueError(
                f"{op}: implementation='pallas' compiles the platform's Pallas kernel and needs a "
                f"GPU{' or TPU' if op in _TPU_KERNELS else ''} backend (this one is "
                f"{jax.default_backend()!r}); use 'pallas_interpret' to run the same kernel on CPU"
            )
    return implementation


def dispatch(op: str, implementations: dict[str, Callable], *args, **params):
    """`op`'s default implementation, chosen inside the program: `implementations` maps each name
    of the defaults table to a function (*args, **params) of arrays and static params. With one
    choice for every platform it is called directly; otherwise the call is one primitive whose
    lowering is registered per platform (`_by_platform`), so a program lowered for several
    platforms at once (jax.export) carries each platform's kernel and nothing else: a Pallas kernel
    is lowered only for the platform it is written for. (`lax.platform_dependent` does not do this:
    its branches are lowered for every platform of the module, and a Triton kernel has no CPU
    lowering.)"""
    chosen = {p: default(op, p) for p in PLATFORMS}
    if len(set(chosen.values())) == 1:
        return implementations[chosen["cpu"]](*args, **params)
    kernels = tuple(sorted((name, implementations[name]) for name in set(chosen.values())))
    return _by_platform(op, kernels).bind(*args, **params)


@functools.cache
def _by_platform(op: str, kernels: tuple[tuple[str, Callable], ...]):
    """A primitive for `op` lowered per platform by the defaults table (the 'xla' function on a
    platform without an entry); abstract evaluation from the 'xla' function, batching by folding
    the vmapped axis into the leading batch axis (every op here treats its clouds independently).
    Gradients stop before it (the ops return indices)."""
    functions = dict(kernels)
    prim = jex.core.Primitive(f"ddjax_{op}")

    def abstract(*avals, **params):
        shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals]
        out = jax.eval_shape(functools.partial(functions["xla"], **params), *shapes)
        return jax.core.ShapedArray(out.shape, out.dtype)

    prim.def_abstract_eval(abstract)
    prim.def_impl(lambda *args, **params: jax.jit(functools.partial(prim.bind, **params))(*args))
    mlir.register_lowering(prim, mlir.lower_fun(functions["xla"], multiple_results=False))
    for platform_name in PLATFORMS:
        choice = default(op, platform_name)
        if choice != "xla":
            rule = mlir.lower_fun(functions[choice], multiple_results=False)
            mlir.register_lowering(prim, rule, platform=platform_name)
    batching.primitive_batchers[prim] = functools.partial(_fold_batch_axis, prim)
    return prim


def _fold_batch_axis(prim, args, dims, **params):
    """vmap of a per-cloud op: the vmapped axis V folded into the leading batch axis B, (V, B, ...)
    -> (V * B, ...), and unfolded from the result."""
    size = next(a.shape[d] for a, d in zip(args, dims) if d is not None)
    moved = [
        jnp.moveaxis(a, d, 0) if d is not None else jnp.broadcast_to(a, (size, *a.shape))
        for a, d in zip(args, dims)
    ]  # each (V, B, ...)
    out = prim.bind(*[m.reshape(-1, *m.shape[2:]) for m in moved], **params)  # (V * B, ...)
    return out.reshape(size, -1, *out.shape[1:]), 0  # (V, B, ...)


def describe() -> str:
    """One line for the start of every job: JAX, backend, devices and the FPS/kNN implementations
    chosen.

    e.g. "jax 0.11.2, backend gpu: 1 x NVIDIA H200 (1 process); kernels fps=pallas, knn=xla".
    """
    devices = jax.devices()
    kinds = ", ".join(sorted({d.device_kind for d in devices}))
    processes = jax.process_count()
    return (
        f"jax {jax.__version__}, backend {jax.default_backend()}: {len(devices)} x {kinds} "
        f"({processes} process{'es' if processes > 1 else ''}); "
        f"kernels fps={resolve('fps', None)}, knn={resolve('knn', None)}"
    )


def triton_compiler_params(*, num_warps: int, num_stages: int = 1):
    """Triton compiler parameters for `pl.pallas_call`, across JAX versions (None if
    unavailable)."""
    try:
        from jax.experimental.pallas import triton as pltriton  # noqa: PLC0415 - optional: jaxlib-dependent
    except ImportError:  # pragma: no cover - depends on the installed jaxlib
        pltriton = None
    params_cls = getattr(pltriton, "CompilerParams", None) or getattr(
        pl, "TritonCompilerParams", None
    )
    if params_cls is None:  # pragma: no cover
        return None
    return params_cls(num_warps=num_warps, num_stages=num_stages)


def next_power_of_2(n: int) -> int:
    """Smallest power of two >= n (Triton block dimensions must be powers of two)."""
    return 1 << max(0, int(n) - 1).bit_length()
