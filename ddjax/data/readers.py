"""Readers for point-cloud files on disk, with errors that name the file and the line."""
from __future__ import annotations

import os

import numpy as np


def read_modelnet_txt(path: str | os.PathLike) -> np.ndarray:
    """Reads an official `modelnet40_normal_resampled` shape: lines `x,y,z,nx,ny,nz` -> f32[N, 6].

    Raises ValueError naming the file (and the line) if it is empty, ragged, non-numeric or non-finite.
    """
    path = os.fspath(path)
    rows = []
    with open(path, "r", encoding="ascii", errors="replace") as f:
        for line_no, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            fields = line.replace(",", " ").split()
            if len(fields) != 6:
                raise ValueError(f"{path}:{line_no}: expected 6 comma-separated values "
                                 f"(x,y,z,nx,ny,nz), got {len(fields)}: {line[:80]!r}")
            try:
                rows.append([float(v) for v in fields])
            except ValueError:
                raise ValueError(f"{path}:{line_no}: not a number in {line[:80]!r}") from None
    if not rows:
        raise ValueError(f"{path}: no points (empty file)")
    data = np.asarray(rows, np.float32)
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        raise ValueError(f"{path}:{int(np.argmax(bad)) + 1}: non-finite value (NaN or inf)")
    return data
