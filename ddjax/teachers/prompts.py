"""Text prompts and class-name lists for the CLIP text teacher (pure Python, no JAX).

Two prompt templates:

* ``"recon"``: ReCon's 60 prompts per class, ``RECON_PREFIXES[j % 20] + classname + RECON_SUFFIXES[j // 20]``
  for ``j = 0..59``. Class names are used verbatim (ModelNet underscores such as ``night_stand`` are kept,
  as ReCon does). The zero-shot class embedding is the plain sum of the 60 raw text features; during
  pretraining ReCon draws one random (prefix, suffix) pair per sample.
* ``"pointclip"``: PointCLIP's single prompt ``"point cloud depth map of a {name}."`` with underscores
  replaced by spaces.

Class-name lists are in label order (label = index).
"""
from __future__ import annotations

import os
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

MODELNET40: Final[tuple[str, ...]] = (
    "airplane", "bathtub", "bed", "bench", "bookshelf", "bottle", "bowl", "car", "chair", "cone",
    "cup", "curtain", "desk", "door", "dresser", "flower_pot", "glass_box", "guitar", "keyboard", "lamp",
    "laptop", "mantel", "monitor", "night_stand", "person", "piano", "plant", "radio", "range_hood", "sink",
    "sofa", "stairs", "stool", "table", "tent", "toilet", "tv_stand", "vase", "wardrobe", "xbox",
)  # fmt: skip
MODELNET10: Final[tuple[str, ...]] = (
    "bathtub", "bed", "chair", "desk", "dresser", "monitor", "night_stand", "sofa", "table", "toilet",
)  # fmt: skip
_SCANOBJECTNN_HEAD: Final[tuple[str, ...]] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door", "shelf", "table",
    "bed", "pillow", "sink", "sofa",
)  # fmt: skip
SCANOBJECTNN_SPELLINGS: Final[tuple[str, ...]] = ("toile", "toilet")


def recon_prompt(classname: str, j: int) -> str:
    """ReCon's prompt number ``j`` (0..59): ``RECON_PREFIXES[j % 20] + classname + RECON_SUFFIXES[j // 20]``.

    ``classname`` is used verbatim (underscores kept).
    """
    if not 0 <= j < NUM_RECON_PROMPTS:
        raise ValueError(f"ReCon prompt index must be in 0..{NUM_RECON_PROMPTS - 1}, got {j}")
    n = len(RECON_PREFIXES)
    return RECON_PREFIXES[j % n] + classname + RECON_SUFFIXES[j // n]


def recon_prompts(classname: str) -> list[str]:
    """All 60 ReCon prompts of one class, in ``j`` order (suffix-major: j = prefix + 20 * suffix)."""
    return [recon_prompt(classname, j) for j in range(NUM_RECON_PROMPTS)]


def pointclip_prompts(classname: str) -> list[str]:
    """PointCLIP's single prompt, ``"point cloud depth map of a {name}."``, underscores replaced by spaces."""
    return [POINTCLIP_TEMPLATE.format(name=classname.replace("_", " "))]


def prompts(classname: str, template: str) -> list[str]:
    """The prompts of ``classname`` for ``template`` (one of ``TEMPLATES``): 60 for "recon", 1 for "pointclip"."""
    if template == "recon":
        return recon_prompts(classname)
    if template == "pointclip":
        return pointclip_prompts(classname)
    raise ValueError(f"unknown prompt template {template!r}; expected one of {TEMPLATES}")


def scanobjectnn_classes(spelling: str = "toile") -> tuple[str, ...]:
    """The 15 ScanObjectNN class names in label order (not alphabetical).

    bag, bin, box, cabinet, chair, desk, display, door, shelf, table, bed, pillow, sink, sofa, and the last
    class (label 14) spelled ``spelling``.

    The default ``"toile"`` is deliberate: ReCon's zero-shot runner (``tools/runner_zeroshot.py``) hard-codes
    the ScanObjectNN names with the typo ``'toile'``, so ReCon's reported ScanObjectNN zero-shot numbers, and
    hence those of the Dual Denoising paper built on it, were computed with the prompt text "toile". Keep the
    default to reproduce those numbers; pass ``spelling="toilet"`` for the correct name (as in the official
    shape-names list and Point-BERT / Uni3D / PointCLIP V2).
    """
    if spelling not in SCANOBJECTNN_SPELLINGS:
        raise ValueError(
            f"ScanObjectNN last-class spelling must be one of {SCANOBJECTNN_SPELLINGS}, got {spelling!r}"
        )
    return _SCANOBJECTNN_HEAD + (spelling,)


def read_names_file(path: str | os.PathLike[str]) -> list[str]:
    """Read an official shape-names file (one class name per line, label = line order).

    Lines are stripped and empty lines skipped (so a missing final newline does not drop the last class).
    Raises ``ValueError`` naming the file if it holds no names.
    """
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"shape-names file {os.fspath(path)!r} contains no class names")
    return names
