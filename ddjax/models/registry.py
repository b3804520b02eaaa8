"""The one table of model kinds: a run folder's `model.kind` (absent: Dual Denoising) -> how to
initialise its variables and build its `Inference` (ddjax/models/interface.py). A new port adds its
row here and nowhere else.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax

from ddjax.models import dual_denoising as dd
from ddjax.models import peers
from ddjax.models.interface import Inference


@dataclasses.dataclass(frozen=True)
class Kind:
    init_variables: Callable  # (model_config, key) -> {'params', 'batch_stats'}
    inference: Callable  # model_config -> Inference


KINDS = {
    "dual_denoising": Kind(dd.init_variables, dd.make_inference),
    "recon": Kind(peers.init_variables, peers.make_inference),
    "ulip_pointbert": Kind(peers.init_variables, peers.make_inference),
    "ulip2_pointbert": Kind(peers.init_variables, peers.make_inference),
    "uni3d": Kind(peers.init_variables, peers.make_inference),
}


def kind(model_config) -> str:
    """The model's kind: `model.kind` of its run record, Dual Denoising where there is none."""
    return model_config.get("kind", "dual_denoising")


def _row(model_config) -> Kind:
    name = kind(model_config)
    if name not in KINDS:
        raise ValueError(f"model kind {name!r} is not one of {sorted(KINDS)}")
    return KINDS[name]


def init_variables(model_config, key: jax.Array) -> dict:
    """{'params', 'batch_stats'} of any kind of model, initialised from `key` (use jax.eval_shape
    for shapes)."""
    return _row(model_config).init_variables(model_config, key)


def inference(model_config) -> Inference:
    """The model's inference functions; building them costs nothing (closures; they compile when
    called)."""
    return _row(model_config).inference(model_config)
