"""Point-tokenization kernels: farthest point sampling and k-nearest neighbours.

Each op has a pure-jnp reference, a Pallas kernel (Triton lowering on GPU, interpret mode on CPU)
and a public function with an ``implementation=`` switch. Nothing here imports from ``ddjax``.
"""

from kernels.fps import fps, fps_reference
from kernels.knn import knn, knn_reference

__all__ = ["fps", "fps_reference", "knn", "knn_reference"]
