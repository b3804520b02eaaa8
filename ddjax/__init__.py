"""ddjax: Dual Denoising (robust 3D representations from CLIP) in JAX/Flax."""

__version__ = "0.1.0"
