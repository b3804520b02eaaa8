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


class PointFileError(ValueError):
    """A user's point-cloud or mesh file cannot be used; the message names the file and the problem."""


POINT_FILE_SUFFIXES = (".npy", ".txt", ".xyz", ".ply", ".off", ".obj")


def _fan_triangles(polygons: list[list[int]]) -> np.ndarray:
    """Polygons (vertex index lists) -> triangles (T, 3) by fans."""
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(tris, np.int64).reshape(-1, 3)


def _read_off(path: str, text: str):
    tokens = text.split()
    if not tokens or not tokens[0].startswith("OFF"):
        raise PointFileError(f"{path}: not an OFF file (first token {tokens[:1]})")
    head = tokens[0][3:]  # ModelNet quirk: 'OFF490 518 0' with the counts glued to the keyword
    rest = ([head] if head else []) + tokens[1:]
    try:
        n_vertices, n_faces = int(rest[0]), int(rest[1])
        values = rest[3:]
        vertices = np.asarray(values[: 3 * n_vertices], np.float64).reshape(n_vertices, 3)
        pos, polygons = 3 * n_vertices, []
        for _ in range(n_faces):
            k = int(values[pos])
            polygons.append([int(v) for v in values[pos + 1: pos + 1 + k]])
            pos += 1 + k
    except (ValueError, IndexError):
        raise PointFileError(f"{path}: malformed OFF (counts, vertices or faces do not parse)") from None
    return vertices, _fan_triangles(polygons)


def _read_obj(path: str, text: str):
    vertices, polygons = [], []
    for line_no, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            if parts[0] == "v":
                vertices.append([float(v) for v in parts[1:4]])
            elif parts[0] == "f":
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                polygons.append([i - 1 if i > 0 else len(vertices) + i for i in idx])
        except ValueError:
            raise PointFileError(f"{path}:{line_no}: malformed OBJ line {line[:60]!r}") from None
    return np.asarray(vertices, np.float64).reshape(-1, 3), _fan_triangles(polygons)


def _read_ply(path: str, data: bytes):
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise PointFileError(f"{path}: not a PLY file (no 'ply' magic or no end_header)")
    header = data[:end].decode("ascii", "replace").splitlines()
    body = data[data.index(b"\n", end) + 1:]
    fmt = next((l.split()[1] for l in header if l.startswith("format")), "")
    elements, current = [], None
    for line in header:
        parts = line.split()
        if parts and parts[0] == "element":
            current = {"name": parts[1], "count": int(parts[2]), "props": []}
            elements.append(current)
        elif parts and parts[0] == "property" and current is not None:
            current["props"].append(parts[1:])
    types = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4", "float": "f4",
             "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2", "int32": "i4",
             "uint32": "u4", "float32": "f4", "float64": "f8"}
    vertices = faces = None
    try:
        if fmt == "ascii":
            rows = iter(body.decode("ascii").splitlines())
            for el in elements:
                values = [next(rows).split() for _ in range(el["count"])]
                if el["name"] == "vertex":
                    names = [p[-1] for p in el["props"]]
                    cols = [names.index(c) for c in "xyz"]
                    vertices = np.asarray([[float(v[c]) for c in cols] for v in values])
                elif el["name"] == "face":
                    faces = _fan_triangles([[int(x) for x in v[1:1 + int(v[0])]] for v in values])
        elif fmt in ("binary_little_endian", "binary_big_endian"):
            order = "<" if fmt == "binary_little_endian" else ">"
            pos = 0
            for el in elements:
                if any(p[0] == "list" for p in el["props"]):
                    count_t, index_t = (order + types[t] for t in el["props"][0][1:3])
                    polygons = []
                    for _ in range(el["count"]):
                        k = int(np.frombuffer(body, count_t, 1, pos)[0])
                        pos += np.dtype(count_t).itemsize
                        polygons.append(np.frombuffer(body, index_t, k, pos).tolist())
                        pos += k * np.dtype(index_t).itemsize
                    if el["name"] == "face":
                        faces = _fan_triangles(polygons)
                    continue
                dtype = np.dtype([(p[-1], order + types[p[0]]) for p in el["props"]])
                table = np.frombuffer(body, dtype, el["count"], pos)
                pos += el["count"] * dtype.itemsize
                if el["name"] == "vertex":
                    vertices = np.stack([table[c].astype(np.float64) for c in "xyz"], axis=1)
        else:
            raise PointFileError(f"{path}: unsupported PLY format {fmt!r}")
    except PointFileError:
        raise
    except (ValueError, KeyError, IndexError, StopIteration):
        raise PointFileError(f"{path}: malformed PLY body (does not match its header)") from None
    if vertices is None:
        raise PointFileError(f"{path}: PLY has no vertex element with x, y, z")
    return vertices, faces


def read_points_file(path) -> tuple[np.ndarray, np.ndarray | None]:
    """(vertices f64[N, 3], triangles int[T, 3] or None) of a .npy, .txt/.xyz, .ply, .off or .obj file."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in POINT_FILE_SUFFIXES:
        raise PointFileError(f"{path}: unsupported file type {suffix!r}; use one of {POINT_FILE_SUFFIXES}")
    try:
        if suffix == ".npy":
            try:
                data = np.load(path, allow_pickle=False)
            except ValueError as e:
                raise PointFileError(f"{path}: not a plain numeric .npy array ({e})") from None
            if data.ndim != 2 or data.shape[1] < 3 or not np.issubdtype(data.dtype, np.number):
                raise PointFileError(f"{path}: expected a numeric (N, >=3) array, got {data.dtype} {data.shape}")
            vertices, faces = data[:, :3].astype(np.float64), None
        elif suffix in (".txt", ".xyz"):
            rows = [l.replace(",", " ").split() for l in open(path, encoding="ascii", errors="replace")]
            rows = [r for r in rows if r and not r[0].startswith("#")]
            try:
                vertices, faces = np.asarray([[float(v) for v in r[:3]] for r in rows], np.float64).reshape(-1, 3), None
            except ValueError:
                raise PointFileError(f"{path}: expected lines of at least 3 numbers (x y z ...)") from None
        elif suffix == ".ply":
            vertices, faces = _read_ply(path, open(path, "rb").read())
        else:
            text = open(path, encoding="ascii", errors="replace").read()
            vertices, faces = (_read_off if suffix == ".off" else _read_obj)(path, text)
    except OSError as e:
        raise PointFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(vertices) == 0:
        raise PointFileError(f"{path}: no points")
    if not np.isfinite(vertices).all():
        raise PointFileError(f"{path}: non-finite coordinates (NaN or inf)")
    if faces is not None and len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise PointFileError(f"{path}: a face refers to a vertex that does not exist")
    return vertices, (faces if faces is not None and len(faces) else None)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, num_points: int, rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform samples on a triangle mesh: f32[num_points, 3]."""
    tri = vertices[faces]  # (T, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if area.sum() <= 0:
        raise PointFileError("mesh has zero surface area")
    which = rng.choice(len(tri), num_points, p=area / area.sum())
    u, v = rng.random((2, num_points))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[which]
    return (t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])).astype(np.float32)
