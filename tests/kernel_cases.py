"""Which kernel implementations the tests run here: every one the backend supports."""

import jax

IMPLEMENTATIONS = ["xla", "pallas_interpret"] + (
    ["pallas"] if jax.default_backend() == "gpu" else []
)
