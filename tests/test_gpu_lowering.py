"""The Pallas kernels lower to Triton for CUDA, checked on any machine through `jax.export`.

This traces and lowers the kernels exactly as a GPU run would (Pallas -> Triton IR inside the
StableHLO module); it does not compile PTX, which needs a GPU. Export refuses Triton custom calls by
default because their serialised form is not stable across versions; we disable that check since
nothing is saved.

From jax 0.11 the Triton lowering asks which GPU it targets (compute capability) and, with no GPU
attached, wants an abstract device: we name an H200 (Hopper, sm_90), the chip the device check runs
on.
"""

import jax
import jax.numpy as jnp
import pytest
from jax import export

from kernels.fps import fps_pallas
from kernels.knn import knn_pallas

TRITON_TARGET = "__gpu$xla.gpu.triton"


def hopper_mesh():
    device = jax.sharding.AbstractDevice(device_kind="NVIDIA H200", num_cores=132, platform="gpu")
    # Auto axes: the mesh only names the target; Explicit ones would turn on sharding-in-types in
    # the kernels.
    return jax.sharding.AbstractMesh(
        (1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,), abstract_device=device
    )


@pytest.mark.parametrize(
    "name, fn",
    [
        ("fps", lambda p: fps_pallas(p, 64)),
        ("knn", lambda p: knn_pallas(p[:, :64], p, 32)),
    ],
)
def test_pallas_kernels_lower_to_triton(name, fn):
    checks = [export.DisabledSafetyCheck.custom_call(TRITON_TARGET)]
    cloud = jax.ShapeDtypeStruct((4, 1000, 3), jnp.float32)  # N not a power of two
    with jax.sharding.use_abstract_mesh(hopper_mesh()):
        exported = export.export(jax.jit(fn), platforms=["cuda"], disabled_checks=checks)(cloud)
    text = exported.mlir_module()
    assert TRITON_TARGET in text, f"{name}: no Triton kernel in the lowered module"
