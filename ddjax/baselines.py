"""Converted peer models (ReCon, ULIP's Point-BERT: ddjax/models/peers.py) for scripts and tests:
`ddjax.baselines.load(RUN_DIR).features(points f32[B, N, 3])` returns a dict of numpy arrays named
like the peers' reference files (`center`, `fps_idx`, `knn_idx`, `encoder_tokens`, `block0_tokens`,
`final_tokens`, and `img_feature`, `text_feature`, `feature` for ReCon or `pc_feat`, `pc_embed` for
ULIP), computed in eval mode.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from ddjax import checkpoints, errors
from ddjax.models import peers


@dataclasses.dataclass(frozen=True)
class Baseline:
    """A converted peer model: `features(points f32[B, N, 3])` -> dict of numpy arrays (see the
    module doc)."""

    config: Any  # the run's model config
    variables: dict
    apply: Callable = dataclasses.field(repr=False)

    def features(self, points) -> dict:
        out = {
            k: np.asarray(v)
            for k, v in self.apply(self.variables, jnp.asarray(points, jnp.float32)).items()
        }
        if self.config.kind == "recon":
            out["feature"] = self.config.ratio * out["text_feature"] + out["img_feature"]
        return out


def load(run_dir) -> Baseline:
    """The model of a converted run folder (CheckpointError if it is not one)."""
    run_config, variables, _ = checkpoints.restore_run(run_dir)
    config = ml_collections.ConfigDict(run_config["model"])
    if not peers.is_baseline(config):
        raise errors.CheckpointError(
            run_dir,
            f"a {config.get('kind', 'dual_denoising')} run, not a converted "
            f"baseline ({', '.join(peers.MODELS)})",
            "convert one with configs/convert.py",
        )
    return Baseline(config, variables, jax.jit(peers.build_model(config).apply))
