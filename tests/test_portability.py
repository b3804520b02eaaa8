"""One program for every platform (ddjax/portability.py, kernels/backend.py): the kernels chosen
inside the program, the TPU FPS kernel exact in Pallas's TPU interpreter and lowered to Mosaic, and
the train step (tiny and base), zero-shot inference (N = 8, t = 600) and one PGD step lowered with
jax.export for cpu, cuda and tpu, each alone and all three in one module, from this CPU machine.
Lowering compiles nothing for the accelerators; the module for all three is also run here on CPU."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import portability
from ddjax.models import dual_denoising as dd
from kernels import fps, knn
from kernels.fps import fps_pallas_tpu, fps_reference
from tests.test_kernels_exact import problem

TRITON, MOSAIC = portability.TRITON, portability.MOSAIC
EXPECTED = {  # the custom calls of each platform's program, with the defaults of kernels/backend.py
    ("cpu",): [],
    ("cuda",): [TRITON],  # Pallas FPS
    ("tpu",): [],  # XLA's FPS until a TPU measures the Mosaic kernel faster
    portability.PLATFORMS: [TRITON],
}


@pytest.mark.parametrize("platforms", list(EXPECTED), ids="+".join)
def test_default_kernels_are_chosen_inside_the_program(platforms):
    cloud = jax.ShapeDtypeStruct((4, 1000, 3), jnp.float32)
    exported = portability.lower(lambda p: fps(p, 64), (cloud,), platforms=platforms)
    assert portability.custom_calls(exported) == EXPECTED[platforms]
    exported = portability.lower(lambda p: knn(p[:, :64], p, 16), (cloud,), platforms=platforms)
    assert portability.custom_calls(exported) == []  # XLA's kNN everywhere


def test_the_module_for_every_platform_runs_the_cpu_branch_here():
    clouds, centers_idx, *_ = problem(2, 1024)
    exported = portability.lower(
        lambda p: fps(p, 64), (jax.ShapeDtypeStruct(clouds.shape, jnp.float32),)
    )
    assert exported.platforms == portability.PLATFORMS
    np.testing.assert_array_equal(exported.call(clouds), centers_idx)
    # vmapped: the extra axis folded into the batch and back
    stacked = np.stack([clouds, clouds[::-1]])  # (2, B, N, 3)
    out = jax.jit(jax.vmap(lambda p: fps(p, 64)))(stacked)
    np.testing.assert_array_equal(out, np.stack([centers_idx, centers_idx[::-1]]))


@pytest.mark.parametrize("b, n", [(2, 1024), (2, 8192), (32, 1024), (32, 8192)])
def test_tpu_fps_kernel_equals_numpy_in_interpret_mode(b, n):
    clouds, centers_idx, *_ = problem(b, n)  # numpy's brute force on exact grid clouds
    s = centers_idx.shape[1]
    out = jax.jit(lambda p: fps(p, s, implementation="pallas_tpu_interpret"))(clouds)
    np.testing.assert_array_equal(out, centers_idx)
    np.testing.assert_array_equal(out, jax.jit(lambda p: fps_reference(p, s))(clouds))


@pytest.mark.parametrize("n, s", [(1000, 64), (8192, 512)])
def test_tpu_fps_kernel_lowers_to_mosaic(n, s):
    cloud = jax.ShapeDtypeStruct((4, n, 3), jnp.float32)
    exported = portability.lower(lambda p: fps_pallas_tpu(p, s), (cloud,), platforms=("tpu",))
    assert portability.custom_calls(exported) == [MOSAIC]


def test_forcing_pallas_needs_its_platform():
    with pytest.raises(ValueError, match="pallas_tpu_interpret"):
        fps(np.zeros((1, 8, 3), np.float32), 2, implementation="pallas_tpu")
    with pytest.raises(ValueError, match="no TPU kernel"):
        knn(
            np.zeros((1, 8, 3), np.float32),
            np.zeros((1, 8, 3), np.float32),
            2,
            implementation="pallas_tpu_interpret",
        )


@pytest.mark.parametrize("variant", ["tiny", "base"])
def test_train_zeroshot_and_pgd_lower_for_every_platform(variant):
    config = dd.model_config(variant)
    programs = {
        "train step": portability.train_program(
            config, batch=32 if variant == "base" else 4, points=1024
        ),
        "zero-shot": portability.zeroshot_program(
            config, batch=64, points=1024, num_paths=8, t=600
        ),
        "pgd step": portability.pgd_program(config, batch=32, points=1024, num_paths=8, t=600),
    }
    for name, (fn, args) in programs.items():
        for platforms, calls in EXPECTED.items():
            exported = portability.lower(fn, args, platforms=platforms, name=name)
            assert portability.custom_calls(exported) == calls, (name, platforms)
            assert exported.platforms == platforms


def test_a_lowering_failure_names_the_operation():
    # XLA has no TPU lowering of the nonsymmetric eigendecomposition
    matrix = jax.ShapeDtypeStruct((3, 3), jnp.float32)
    with pytest.raises(
        portability.LoweringError,
        match=r"\(eig for tpu\): .*primitive 'eig' not found for platform tpu",
    ):
        portability.lower(lambda m: jnp.linalg.eig(m)[0], (matrix,), platforms=("tpu",), name="eig")


def test_the_benchmark_reproduces_its_cpu_reference():
    """benchmarks/portability.py on this CPU against benchmarks/results/portability-cpu.json: bit
    for bit on the processor and jax that made it, within float32's tolerance on any other CPU."""
    from benchmarks import portability as bench

    reference = json.loads(bench.REFERENCE.read_text())
    assert reference["machine"]["backend"] == "cpu"
    result = bench.measure(reference["settings"])
    comparison = bench.compare(result["values"], reference["values"])
    if reference["machine"] == bench.fingerprint():
        assert comparison["exact"], comparison
    else:  # another processor or jax: XLA may round differently
        floats = [r for k, r in comparison.items() if k not in ("exact", "zeroshot_top1")]
        assert all("float32" in r["within"] for r in floats), comparison
    assert len(result["values"]["train_losses"]) == 20
    assert result["costs"]["step_s"] > 0 and set(result["costs"]["compile_s"]) == {
        "train_step",
        "zeroshot",
        "attack_gradient",
    }


def test_compare_judges_each_precision():
    from benchmarks import portability as bench

    reference = {"a": [1.0, -2.0, 4.0], "zeroshot_top1": [0, 1]}
    same = bench.compare({"a": [1.0, -2.0, 4.0], "zeroshot_top1": [0, 1]}, reference)
    assert same["exact"] and same["a"] == {
        "max_abs": 0.0,
        "max_rel": 0.0,
        "within": ["float32", "tf32", "bfloat16"],
    }
    # 4e-3 off at the largest magnitude 4: 1e-3 normwise, TF32's but not float32's
    near = bench.compare({"a": [1.0, -2.0, 4.004], "zeroshot_top1": [0, 2]}, reference)
    assert not near["exact"] and near["zeroshot_top1"] == {"differ": 1}
    assert near["a"]["max_abs"] == pytest.approx(4e-3) and near["a"]["max_rel"] == pytest.approx(
        1e-3
    )
    assert near["a"]["within"] == ["tf32", "bfloat16"]
    far = bench.compare({"a": [1.0, -2.0, 5.0], "zeroshot_top1": [0, 1]}, reference)
    assert far["a"]["within"] == []
