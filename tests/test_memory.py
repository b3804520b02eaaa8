"""The memory check made before compiling (ddjax/memory.py): its bound against XLA's own memory
analysis of the compiled inference, its arithmetic against the formula written out, the device's
size against /proc/meminfo, and the refusal's one line."""

import pathlib

import jax
import jax.numpy as jnp
import pytest

from ddjax import errors, memory
from ddjax.models import dual_denoising as dd
from ddjax.models import registry


@pytest.mark.parametrize(
    "dtype, batch, num_paths, t, per_step",
    [
        ("float32", 4, 8, 500, 8),  # every path in one vmap
        ("float32", 8, 32, 300, 32),
        ("float32", 4, 8, 0, 8),  # t = 0: the encoder once, the feature branch per path
        ("bfloat16", 8, 32, 300, 4),  # 4 paths per lax.map step
    ],
)
def test_the_bound_never_exceeds_what_xla_allocates(dtype, batch, num_paths, t, per_step):
    # A lower bound must hold for what the compiled program really needs: its temporaries and its
    # output (the arguments are the caller's).
    config = dd.model_config("tiny", dtype=dtype)
    inference = registry.inference(config)
    variables = registry.init_variables(config, jax.random.key(0))
    fn = jax.jit(
        lambda v, p, k: inference.infer(v, p, k, t=t, num_paths=num_paths, paths_per_step=per_step)
    )
    compiled = fn.lower(variables, jnp.zeros((batch, 256, 3)), jax.random.key(0)).compile()
    analysis = compiled.memory_analysis()
    allocated = analysis.temp_size_in_bytes + analysis.output_size_in_bytes
    at_once = batch * (1 if t == 0 else per_step)
    bound = memory.inference_bytes(config.to_dict(), batch, num_paths, at_once)
    assert 0 < bound <= allocated, (bound, allocated)


def test_the_bound_is_the_formula_written_out():
    base = dd.model_config("base").to_dict()
    # outputs N x B x k x D, then depth x G x width per cloud evaluated together, 4 bytes each
    outputs = 8 * 32 * 2 * 512 * 4
    states = (32 * 8) * 12 * 64 * 384 * 4
    assert memory.inference_bytes(base, 32, 8, 32 * 8) == outputs + states
    half = dd.model_config("base", dtype="bfloat16").to_dict()
    assert memory.inference_bytes(half, 32, 8, 32 * 8) == (outputs + states) // 2


def test_a_cpu_device_holds_the_hosts_memory():
    total_kib = next(
        int(line.split()[1])
        for line in pathlib.Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    have, where = memory.device_bytes()
    assert abs(have - 1024 * total_kib) < 64 << 20 and "host" in where


def test_a_setting_beyond_the_device_is_refused_with_both_figures():
    have, _ = memory.device_bytes()
    memory.check_fits("num_paths", "N=8", have // 2, "lower it")  # fits: no error
    with pytest.raises(errors.ConfigError) as refused:
        memory.check_fits("num_paths", "N=8", 3 * have, "lower it")
    line = str(refused.value)
    assert "config.num_paths" in line and memory.gib(3 * have) in line and memory.gib(have) in line
    assert memory.gib(3 * 2**30) == "3 GiB" and memory.gib(2.5e4 * 2**40) == "2.5e+04 TiB"
