"""Trace-time argument checks shared by the kernels: clear ValueErrors that name the argument and
shape."""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify


def check_cloud(op: str, name: str, x) -> None:
    """`x` must be a float array of shape [B, N, 3]."""
    shape = tuple(np.shape(x))
    if len(shape) != 3 or shape[-1] != 3:
        raise ValueError(f"{op}: `{name}` must have shape [B, N, 3], got shape {shape}")
    dtype = jnp.result_type(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            f"{op}: `{name}` must be a floating-point array, got dtype {dtype} (shape {shape})"
        )


def check_size(op: str, name: str, value, *, upper: int, upper_name: str) -> int:
    """`value` must be a Python/numpy integer in [1, upper]; returns it as int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{op}: `{name}` must be an integer, got {value!r} of type {type(value).__name__}"
        )
    value = int(value)
    if not 1 <= value <= upper:
        raise ValueError(f"{op}: `{name}` must be in [1, {upper_name}={upper}], got {value}")
    return value


def check_finite(op: str, name: str, x) -> None:
    """Raises ValueError if `x` holds NaN or inf.

    On concrete arrays the check runs now. Inside `jax.jit` the values are not known at trace time,
    so the check is staged with `jax.experimental.checkify`: wrap the jitted function in
    `checkify.checkify` and call `err.throw()` to get the error (an un-functionalised check refuses
    to trace, saying so).
    """
    if isinstance(x, jax.core.Tracer):
        bad = ~jnp.isfinite(x)
        checkify.check(
            ~jnp.any(bad),
            f"{op}: `{name}` has {{count}} non-finite coordinates",
            count=jnp.sum(bad),
        )
        return
    arr = np.asarray(x)
    bad = ~np.isfinite(arr)
    if bad.any():
        clouds = np.unique(np.nonzero(bad)[0]).tolist()
        raise ValueError(
            f"{op}: `{name}` has {int(bad.sum())} non-finite coordinates "
            f"(in batch entries {clouds[:10]}{'...' if len(clouds) > 10 else ''})"
        )
