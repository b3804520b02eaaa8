"""Text prompts for the CLIP text teacher (pure Python, no JAX); the class names are
ddjax/data/classnames.py.

Two prompt templates:

* ``"recon"``: ReCon's 60 prompts per class,
  ``RECON_PREFIXES[j % 20] + classname + RECON_SUFFIXES[j // 20]`` for ``j = 0..59``. Class names
  are used verbatim (ModelNet underscores such as ``night_stand`` are kept, as ReCon does). The
  zero-shot class embedding is the plain sum of the 60 raw text features; during pretraining ReCon
  draws one random (prefix, suffix) pair per sample.
* ``"pointclip"``: PointCLIP's single prompt ``"point cloud depth map of a {name}."`` with
  underscores replaced by spaces.
"""

from __future__ import annotations

from typing import Final

RECON_PREFIXES: Final[tuple[str, ...]] = (
    "",  # 0
    "A ",  # 1
    "A model of ",  # 2
    "A model of a ",  # 3
    "A image of ",  # 4
    "A image of a ",  # 5
    "A 3D model of ",  # 6
    "A 3D model of a ",  # 7
    "A rendering model of ",  # 8
    "A rendering model of a ",  # 9
    "A point cloud of ",  # 10
    "A point cloud of a ",  # 11
    "A point cloud model of ",  # 12
    "A point cloud model of a ",  # 13
    "A 3D rendering model of ",  # 14
    "A 3D rendering model of a ",  # 15
    "A rendering image of ",  # 16
    "A rendering image of a ",  # 17
    "A 3D rendering image of ",  # 18
    "A 3D rendering image of a ",  # 19
)
RECON_SUFFIXES: Final[tuple[str, ...]] = (".", " with white background.", " with black context.")
NUM_RECON_PROMPTS: Final[int] = len(RECON_PREFIXES) * len(RECON_SUFFIXES)  # 60

POINTCLIP_TEMPLATE: Final[str] = "point cloud depth map of a {name}."

TEMPLATES: Final[tuple[str, ...]] = ("recon", "pointclip")


def recon_prompt(classname: str, j: int) -> str:
    """ReCon's prompt number ``j`` (0..59): ``RECON_PREFIXES[j % 20] + classname + RECON_SUFFIXES[j
    // 20]``.

    ``classname`` is used verbatim (underscores kept).
    """
    if not 0 <= j < NUM_RECON_PROMPTS:
        raise ValueError(f"ReCon prompt index must be in 0..{NUM_RECON_PROMPTS - 1}, got {j}")
    n = len(RECON_PREFIXES)
    return RECON_PREFIXES[j % n] + classname + RECON_SUFFIXES[j // n]


def recon_prompts(classname: str) -> list[str]:
    """All 60 ReCon prompts of one class, in ``j`` order (suffix-major: j = prefix +
    20 * suffix)."""
    return [recon_prompt(classname, j) for j in range(NUM_RECON_PROMPTS)]


def pointclip_prompts(classname: str) -> list[str]:
    """PointCLIP's single prompt, ``"point cloud depth map of a {name}."``, underscores replaced by
    spaces."""
    return [POINTCLIP_TEMPLATE.format(name=classname.replace("_", " "))]


def prompts(classname: str, template: str) -> list[str]:
    """The prompts of ``classname`` for ``template`` (one of ``TEMPLATES``): 60 for "recon", 1 for
    "pointclip"."""
    if template == "recon":
        return recon_prompts(classname)
    if template == "pointclip":
        return pointclip_prompts(classname)
    raise ValueError(f"unknown prompt template {template!r}; expected one of {TEMPLATES}")
