"""What evaluation needs of a model, whatever its kind: `Inference`, built by
ddjax/models/registry.py.

    inference = registry.inference(model_config)   # Dual Denoising, ReCon, ULIP, ...
    infer = jax.jit(inference.infer, static_argnames=("t", "num_paths"))
    feats = infer(variables, points, key, t=600, num_paths=8)   # f32[B, k, D]

The zero-shot, attack, certify and classify jobs use this alone and never ask which kind a model is:
a deterministic model (a converted peer) says so with `num_paths == 1` and runs at (1, 0) through
`setting`, and a model without a noise input has no `on_noisy`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable


@dataclasses.dataclass(frozen=True)
class Inference:
    """A model's inference functions (`t` and `num_paths` are static: jit with static_argnames):

    infer(variables, points f32[B, N, 3], key, t, num_paths, ...) -> f32[B, k, D]: the mean over
    `num_paths`
      noise paths (paper Eq. 4) of the raw features, one per feature type (`feature_types`).
    infer_path(variables, points, path_key, t) -> f32[B, k, D]: one path.
    infer_paths(variables, points, key, t, num_paths, ...) -> f32[num_paths, B, k, D]: every path
    (infer's mean
      of them; sweeps reuse the first n of them for every n).
    on_noisy(variables, noisy, key, t) -> f32[B, k, D]: one path on a cloud the caller noised
    (randomized
      smoothing's base classifier), or None for a model with no noise input.
    num_paths: None when the model takes any number of noise paths; 1 for a deterministic model,
    which runs at
      one path and t = 0 whatever a job asks (`setting`).
    """

    infer: Callable
    infer_path: Callable
    infer_paths: Callable
    feature_types: tuple[str, ...]
    on_noisy: Callable | None = None
    num_paths: int | None = None

    @property
    def deterministic(self) -> bool:
        """Every path is the same computation: no N x t setting to choose, sweep or average over
        (EOT)."""
        return self.num_paths == 1

    def setting(self, num_paths: int, t: int) -> tuple[int, int]:
        """The (num_paths, t) the model runs for a job's (num_paths, t): (1, 0) when
        deterministic."""
        return (1, 0) if self.deterministic else (num_paths, t)
