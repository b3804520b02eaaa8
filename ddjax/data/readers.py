"""Readers for point-cloud files on disk, with errors that name the file and the line.

Point files (.npy, .txt/.xyz, point-only PLY) and the text meshes ModelNet and ShapeNet come in
(OFF, OBJ, PLY) are read here; the binary and scene formats (GLB, glTF with its buffers, STL binary
and ASCII) through trimesh, behind the same cheap header checks, size limit and one-line errors,
their scenes flattened with each node's transform. OFF, OBJ and PLY stay on the readers here
because trimesh 5.2 reads malformed ones without a word (an OBJ face `f 0 1 2` as another triangle,
a 2-vertex face dropped, an OFF whose records wrap across lines as vertices without faces), which
these refuse naming the line (tests/test_bad_inputs.py).
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
from array import array

import numpy as np
import trimesh

from ddjax import errors


def read_modelnet_txt(path: str | os.PathLike) -> np.ndarray:
    """Reads an official `modelnet40_normal_resampled` shape: lines `x,y,z,nx,ny,nz` -> f32[N, 6].

    Raises PointFileError naming the file (and the line) if it is empty, ragged, non-numeric or
    non-finite.
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
                raise PointFileError(
                    f"{path}:{line_no}",
                    "expected 6 comma-separated values "
                    f"(x,y,z,nx,ny,nz), got {len(fields)}: {line[:80]!r}",
                )
            try:
                rows.append([float(v) for v in fields])
            except ValueError:
                raise PointFileError(
                    f"{path}:{line_no}", f"not a number in {line[:80]!r}"
                ) from None
    if not rows:
        raise PointFileError(path, "no points (empty file)")
    data = np.asarray(rows, np.float32)
    bad = ~np.isfinite(data).all(axis=1)
    if bad.any():
        raise PointFileError(f"{path}:{int(np.argmax(bad)) + 1}", "non-finite value (NaN or inf)")
    return data


class PointFileError(errors.UserError):
    """A user's point-cloud or mesh file cannot be used: PointFileError(path[:line], why[, what to
    do])."""

    what = "cannot use the point file"
    todo = (
        "the README's 'Zero-shot evaluation and classification' says what each format may contain"
    )


# read through trimesh (TRIMESH_FORMATS: the format's name in errors)
TRIMESH_FORMATS = {".glb": "GLB", ".gltf": "glTF", ".stl": "STL"}
POINT_FILE_SUFFIXES = (".npy", ".txt", ".xyz", ".ply", ".off", ".obj", *TRIMESH_FORMATS)
# A file trimesh reads whole: larger ones are refused before reading (a mesh of 20M triangles).
MAX_MESH_BYTES = 1 << 30


# Coordinates above this overflow the squares of the unit-ball normalisation (float64), below this
# radius a cloud is one point: both are refused instead of silently normalised to zeros.
MAX_ABS_COORDINATE = 1e150
# The cheap check (`check_header`) reads this much of a file; a text point file's lines are shorter.
HEAD_BYTES = MAX_LINE = 1 << 16
MIN_RADIUS = 1e-12


def _fan_triangles(polygons: list[list[int]]) -> np.ndarray:
    """Polygons (vertex index lists) -> triangles (T, 3) by fans."""
    tris = [(p[0], p[i], p[i + 1]) for p in polygons for i in range(1, len(p) - 1)]
    return np.asarray(tris, np.int64).reshape(-1, 3)


def _decode(path: str, data: bytes) -> str:
    """UTF-8 text (a leading byte-order mark dropped); PointFileError if the bytes are not text."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise PointFileError(path, f"not a text file (byte {e.start} is not UTF-8)") from None


def _strip_comments(text: str) -> list[tuple[int, str]]:
    """(line number, content) of the non-empty lines, '#' comments removed."""
    lines = ((n, line.split("#", 1)[0].strip()) for n, line in enumerate(text.splitlines(), 1))
    return [(n, line) for n, line in lines if line]


def _open_npy(path: str) -> np.ndarray:
    """A numeric (N, >= 3) .npy array as a memory map (nothing read but its header), so that a
    header that claims more data than the file holds is refused instead of allocated."""
    with open(path, "rb") as f:
        magic = f.read(6)
    if not magic:
        raise PointFileError(path, "empty file")
    if magic.startswith(b"PK"):
        raise PointFileError(
            f"{path}", "an .npz archive, not an .npy array", "save one (N, 3) array with np.save"
        )
    if magic != b"\x93NUMPY":
        raise PointFileError(
            f"{path}", "not an .npy file (no NUMPY magic)", "save one (N, 3) array with np.save"
        )
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    # pickled objects, a bad or huge header, a truncated body
    except (ValueError, OSError, EOFError) as e:
        raise PointFileError(path, f"not a plain numeric .npy array ({e})") from None
    if data.dtype.kind not in "iuf":
        raise PointFileError(
            path,
            f"dtype {data.dtype} is not real numbers (integer or float)",
            "save the points as a float array; complex, boolean, string and structured arrays are "
            "refused",
        )
    if data.ndim != 2 or data.shape[1] < 3:
        raise PointFileError(path, f"expected an (N, >= 3) array of points, got shape {data.shape}")
    return data


def _read_npy(path: str) -> np.ndarray:
    """The first three columns of a numeric (N, >= 3) .npy array (`_open_npy`)."""
    return np.asarray(_open_npy(path)[:, :3], np.float64)


def _text_lines(path: str):
    """(line number, content) of a UTF-8 text file streamed line by line (a leading byte-order mark
    dropped, '#' comments and blank lines skipped): the file is never held in memory whole, and a
    line longer than MAX_LINE characters (no point's line is) is refused as soon as it is seen."""
    try:
        with open(path, "r", encoding="utf-8-sig", newline=None) as f:
            for line_no, line in enumerate(iter(lambda: f.readline(MAX_LINE), ""), 1):
                if len(line) == MAX_LINE and not line.endswith("\n"):
                    raise PointFileError(
                        f"{path}:{line_no}",
                        f"a line longer than {MAX_LINE // 1024} KiB: not a text point file",
                    )
                line = line.split("#", 1)[0].strip()
                if line:
                    yield line_no, line
    except UnicodeDecodeError as e:
        raise PointFileError(
            path, f"not a text file (byte {e.start} of a block is not UTF-8)"
        ) from None


def _read_text_points(path: str) -> np.ndarray:
    """.txt/.xyz: one point per line, x y z first, separated by spaces or commas; every line the
    same number of values (at least 3); '#' comments and blank lines skipped. Streamed: the values
    go straight into a compact float64 buffer (8 bytes each), so memory stays near the array's own
    size."""
    values, width = array("d"), None
    for line_no, line in _text_lines(path):
        fields = line.replace(",", " ").split()
        if width is None:
            width = len(fields)
            if width < 3:
                raise PointFileError(
                    f"{path}:{line_no}",
                    f"{width} value(s) on the first point's line",
                    "a point needs at least 3 values (x y z ...)",
                )
        if len(fields) != width:
            raise PointFileError(
                f"{path}:{line_no}",
                f"{len(fields)} values, but the first point's line has {width}: {line[:60]!r}",
            )
        try:
            values.extend((float(fields[0]), float(fields[1]), float(fields[2])))
        except ValueError:
            raise PointFileError(f"{path}:{line_no}", f"not a number in {line[:60]!r}") from None
    if not values:
        raise PointFileError(path, "no points (empty file, or only blank lines and comments)")
    return np.frombuffer(values, np.float64).reshape(-1, 3)  # shares the buffer: no copy


# Geomview's OFF keywords: [ST][C][N][4][n]OFF (texture, colour, normal data on each vertex line)
OFF_KEYWORD = re.compile(r"(ST)?C?N?4?n?OFF")


def _off_counts(path: str, lines: list[tuple[int, str]]) -> tuple[int, int, int]:
    """(vertex count, face count, index in `lines` of the first vertex line) of an OFF header: the
    counts follow the keyword on its line (ModelNet glues them: 'OFF490 518 0') or fill the next."""
    first = lines[0][1].split() if lines else []
    keyword = OFF_KEYWORD.match(first[0]) if first else None
    if keyword is None:
        raise PointFileError(path, f"not an OFF file (first token {first[:1]})")
    if "4" in keyword.group(0) or "nOFF" in keyword.group(0):
        raise PointFileError(path, f"a {keyword.group(0)} file: only 3-D OFF variants are read")
    glued = first[0][keyword.end() :]
    rest, body = ([glued] if glued else []) + first[1:], 1
    if not rest and len(lines) > 1:
        rest, body = lines[1][1].split(), 2
    try:
        n_vertices, n_faces = int(rest[0]), int(rest[1])
    except (ValueError, IndexError):
        raise PointFileError(
            path,
            "malformed OFF header (expected 'OFF' then vertex, face and edge "
            f"counts, got {rest[:3]})",
        ) from None
    if n_vertices < 0 or n_faces < 0:
        raise PointFileError(
            path, f"negative count in the OFF header ({n_vertices} vertices, {n_faces} faces)"
        )
    return n_vertices, n_faces, body


def _read_off(path: str, text: str):
    """An OFF mesh: one vertex per line (x y z first; normals, colours or texture coordinates after
    them are ignored), then one face per line (k, then k vertex indices; a colour after them is
    ignored). A file whose vertex lines differ in width (its data wraps across lines) or that has
    fewer lines than its counts is read as a token stream instead."""
    lines = _strip_comments(text)
    n_vertices, n_faces, body = _off_counts(path, lines)
    vertex_lines = lines[body : body + n_vertices]
    widths = {len(line.split()) for _, line in vertex_lines}
    face_lines = lines[body + n_vertices : body + n_vertices + n_faces]
    short = len(vertex_lines) < n_vertices or len(face_lines) < n_faces
    if short or len(widths) > 1 or min(widths, default=3) < 3:
        return _read_off_tokens(path, lines[body:], n_vertices, n_faces)
    vertices = np.empty((n_vertices, 3), np.float64)
    for i, (line_no, line) in enumerate(vertex_lines):
        try:
            vertices[i] = [float(v) for v in line.split()[:3]]
        except ValueError:
            raise PointFileError(f"{path}:{line_no}", f"not a vertex: {line[:60]!r}") from None
    polygons = []
    for face, (line_no, line) in enumerate(face_lines):
        parts = line.split()
        try:
            k = int(parts[0])
            polygons.append([int(v) for v in parts[1 : 1 + k]])
        except ValueError:
            raise PointFileError(
                f"{path}:{line_no}", f"OFF face {face} is not 'k i1 ... ik': {line[:60]!r}"
            ) from None
        if k < 3 or len(polygons[-1]) < k:
            raise PointFileError(
                f"{path}:{line_no}",
                f"OFF face {face} has {k} vertices"
                + (" (a face needs 3)" if k < 3 else f" but lists {len(polygons[-1])}"),
            )
    return vertices, _fan_triangles(polygons)


def _read_off_tokens(path: str, lines: list[tuple[int, str]], n_vertices: int, n_faces: int):
    """The OFF body as one token stream (vertex data wrapped across lines)."""
    values = [t for _, line in lines for t in line.split()]
    if len(values) < 3 * n_vertices:
        raise PointFileError(
            path,
            f"the OFF header promises {n_vertices} vertices, the file holds {len(values) // 3}",
        )
    try:
        vertices = np.asarray(values[: 3 * n_vertices], np.float64).reshape(n_vertices, 3)
        pos, polygons = 3 * n_vertices, []
        for face in range(n_faces):
            k = int(values[pos])
            if k < 3 or pos + 1 + k > len(values):
                raise PointFileError(path, f"OFF face {face} has {k} vertices or is cut short")
            polygons.append([int(v) for v in values[pos + 1 : pos + 1 + k]])
            pos += 1 + k
    except PointFileError:
        raise
    except (ValueError, IndexError):
        raise PointFileError(path, "malformed OFF (vertices or faces do not parse)") from None
    return vertices, _fan_triangles(polygons)


def _read_obj(path: str, text: str):
    vertices, polygons = [], []
    for line_no, line in _strip_comments(text):
        parts = line.split()
        try:
            if parts[0] == "v":
                if len(parts) < 4:
                    raise PointFileError(
                        f"{path}:{line_no}", f"a vertex needs x y z, got {line[:60]!r}"
                    )
                vertices.append([float(v) for v in parts[1:4]])
            elif parts[0] == "f":
                idx = [int(p.split("/")[0]) for p in parts[1:]]
                if len(idx) < 3 or 0 in idx:
                    raise PointFileError(
                        f"{path}:{line_no}",
                        "a face needs 3 or more vertex numbers (from 1 or "
                        f"negative), got {line[:60]!r}",
                    )
                polygons.append([i - 1 if i > 0 else len(vertices) + i for i in idx])
        except PointFileError:
            raise
        except ValueError:
            raise PointFileError(f"{path}:{line_no}", f"malformed OBJ line {line[:60]!r}") from None
    return np.asarray(vertices, np.float64).reshape(-1, 3), _fan_triangles(polygons)


PLY_TYPES = {
    "char": "i1",
    "uchar": "u1",
    "short": "i2",
    "ushort": "u2",
    "int": "i4",
    "uint": "u4",
    "float": "f4",
    "double": "f8",
    "int8": "i1",
    "uint8": "u1",
    "int16": "i2",
    "uint16": "u2",
    "int32": "i4",
    "uint32": "u4",
    "float32": "f4",
    "float64": "f8",
}


def _ply_header(path: str, data: bytes) -> tuple[str, list[dict], int]:
    """(format, elements [{'name', 'count', 'props': [('x', 'f4') or ('vertex_indices', ('u1',
    'i4'))]}], offset of the body). The header ends at the first line that is exactly 'end_header'
    (comments may contain the word)."""
    pos, lines = 0, []
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise PointFileError(path, "not a PLY file (no 'end_header' line)")
        line = data[pos:nl].decode("ascii", "replace").strip()
        pos = nl + 1
        if not lines and line != "ply":
            raise PointFileError(path, "not a PLY file (no 'ply' magic)")
        lines.append(line)
        if line == "end_header":
            break
    fmt, elements = "", []
    for line_no, line in enumerate(lines, 1):
        parts = line.split()
        if not parts or parts[0] in ("comment", "obj_info"):
            continue
        try:
            if parts[0] == "format":
                fmt = parts[1]
            elif parts[0] == "element":
                count = int(parts[2])
                if count < 0:
                    raise ValueError
                elements.append({"name": parts[1], "count": count, "props": []})
            elif parts[0] == "property":
                if not elements:
                    raise ValueError
                if parts[1] == "list":
                    elements[-1]["props"].append(
                        (parts[4], (PLY_TYPES[parts[2]], PLY_TYPES[parts[3]]))
                    )
                else:
                    elements[-1]["props"].append((parts[2], PLY_TYPES[parts[1]]))
        except (ValueError, IndexError, KeyError):
            raise PointFileError(
                path, f"PLY header line {line_no} is malformed: {line[:60]!r}"
            ) from None
    return fmt, elements, pos


def _ply_face_list(props) -> int | None:
    """Index of the face element's vertex-index list property (vertex_indices / vertex_index, else
    the first list)."""
    lists = [i for i, (name, t) in enumerate(props) if isinstance(t, tuple)]
    named = [i for i in lists if props[i][0] in ("vertex_indices", "vertex_index")]
    return (named or lists or [None])[0]


def _read_ply(path: str, data: bytes):
    fmt, elements, start = _ply_header(path, data)
    body, pos = data[start:], 0  # pos: the binary reader's offset in body
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise PointFileError(path, f"unsupported PLY format {fmt!r}")
    order = "<" if fmt == "binary_little_endian" else ">"
    tokens = iter(body.split()) if fmt == "ascii" else None
    vertices = faces = None
    try:
        for el in elements:
            props = el["props"]
            has_list = any(isinstance(t, tuple) for _, t in props)
            if fmt != "ascii" and not has_list:  # fixed-size rows: one structured read
                dtype = np.dtype([(f"p{i}", order + t) for i, (_, t) in enumerate(props)])
                # ValueError if the body is too short
                table = np.frombuffer(body, dtype, el["count"], pos)
                pos += el["count"] * dtype.itemsize
                columns = {name: table[f"p{i}"] for i, (name, _) in enumerate(props)}
            else:  # row by row, every property in its order
                columns = {name: [] for name, _ in props}
                for _ in range(el["count"]):
                    for name, t in props:
                        if isinstance(t, tuple):
                            if tokens is not None:
                                k = int(next(tokens))
                                columns[name].append([int(next(tokens)) for _ in range(k)])
                                continue
                            k = int(np.frombuffer(body, order + t[0], 1, pos)[0])
                            pos += np.dtype(t[0]).itemsize
                            columns[name].append(np.frombuffer(body, order + t[1], k, pos).tolist())
                            pos += k * np.dtype(t[1]).itemsize
                        elif tokens is not None:
                            columns[name].append(float(next(tokens)))
                        else:
                            columns[name].append(np.frombuffer(body, order + t, 1, pos)[0])
                            pos += np.dtype(t).itemsize
            if el["name"] == "vertex":
                if not all(c in columns for c in "xyz"):
                    raise PointFileError(path, "the PLY vertex element has no x, y, z properties")
                vertices = np.stack(
                    [np.asarray(columns[c], np.float64) for c in "xyz"], axis=1
                ).reshape(-1, 3)
            elif el["name"] == "face":
                which = _ply_face_list(props)
                if which is not None:
                    faces = _fan_triangles(columns[props[which][0]])
    except PointFileError:
        raise
    except (ValueError, IndexError, StopIteration, TypeError):
        raise PointFileError(path, "malformed PLY body (it does not match its header)") from None
    if vertices is None:
        raise PointFileError(path, "PLY has no vertex element")
    return vertices, faces


def check_cloud(path: str, vertices: np.ndarray) -> None:
    """PointFileError naming the file for a cloud that would classify as something made up: no
    points, non-finite coordinates, coordinates whose normalisation overflows, or all points in one
    place."""
    if len(vertices) == 0:
        raise PointFileError(path, "no points")
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.all():
        raise PointFileError(
            path, f"non-finite coordinates (NaN or inf), first at point {int(np.argmin(finite))}"
        )
    largest = float(np.abs(vertices).max())
    if largest > MAX_ABS_COORDINATE:
        raise PointFileError(
            path,
            f"coordinates up to {largest:.3g} are too large to normalise (at most "
            f"{MAX_ABS_COORDINATE:g})",
            "rescale the file",
        )
    centred = vertices - vertices.mean(axis=0)
    radius = float(np.sqrt((centred**2).sum(axis=1)).max())
    if radius <= MIN_RADIUS * max(1.0, largest):
        raise PointFileError(
            path,
            f"a degenerate cloud, all {len(vertices)} points in one place (largest "
            f"distance from their centroid {radius:.3g})",
        )


def _point_file_type(path) -> tuple[str, str]:
    """(path as a string, its lower-case suffix); PointFileError for an unsupported type."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in POINT_FILE_SUFFIXES:
        raise PointFileError(
            path, f"unsupported file type {suffix!r}", f"use one of {POINT_FILE_SUFFIXES}"
        )
    return path, suffix


def check_header(path) -> None:
    """The cheap check of a point file, made for every input before any is read whole: its type, and
    what its first HEAD_BYTES say (an .npy header of a real (N, >= 3) array the file can hold; a
    text format's UTF-8 without NUL bytes and a first line shorter than that; the OFF keyword; the
    whole PLY header). PointFileError naming the file otherwise: a 3 GB file of NUL bytes named
    .xyz is refused after reading 64 KiB of it."""
    path, suffix = _point_file_type(path)
    try:
        if suffix == ".npy":
            _open_npy(path)
            return
        with open(path, "rb") as f:
            head, size = f.read(HEAD_BYTES), os.fstat(f.fileno()).st_size
    except OSError as e:
        raise PointFileError(path, f"cannot read ({e.strerror or e})") from None
    if not head:
        raise PointFileError(path, "no points (empty file)")
    if suffix in TRIMESH_FORMATS:
        _check_mesh_head(path, suffix, head, size)
        return
    if suffix == ".ply":
        if b"end_header" not in head and size > HEAD_BYTES:
            raise PointFileError(path, f"no PLY header within its first {HEAD_BYTES // 1024} KiB")
        _ply_header(path, head)
        return
    nul = head.find(b"\0")
    if nul >= 0:
        raise PointFileError(path, f"not a text file (a NUL byte at offset {nul})")
    if size > HEAD_BYTES and b"\n" not in head and b"\r" not in head:
        raise PointFileError(
            path, f"its first line is longer than {HEAD_BYTES // 1024} KiB: not a text point file"
        )
    if len(head) == HEAD_BYTES:  # whole lines only: a character may be cut at the end
        head = head[: max(head.rfind(b"\n"), head.rfind(b"\r")) + 1]
    text = _decode(path, head)
    if suffix == ".off":
        lines = _strip_comments(text)
        if not lines or not OFF_KEYWORD.match(lines[0][1]):
            raise PointFileError(path, f"not an OFF file (it starts {text.lstrip()[:12]!r})")


def _check_mesh_head(path: str, suffix: str, head: bytes, size: int) -> None:
    """The cheap check of a file trimesh reads: its size, and a GLB's header (magic, version 2, the
    length it states), an STL's size against its triangle count (binary) or its 'solid' keyword
    (ASCII), a glTF's JSON object."""
    if size > MAX_MESH_BYTES:
        raise PointFileError(
            path,
            f"{size / 2**20:.0f} MiB, more than the {MAX_MESH_BYTES >> 20} MiB a mesh may have",
            "simplify the mesh or split it",
        )
    if suffix == ".glb":
        if len(head) < 12 or head[:4] != b"glTF":
            raise PointFileError(path, "not a GLB file (no 'glTF' magic)")
        version, length = struct.unpack("<II", head[4:12])
        if version != 2:
            raise PointFileError(path, f"a GLB of version {version}: only glTF 2.0 is read")
        if length != size:
            raise PointFileError(
                path, f"its GLB header states {length} bytes, the file has {size} (cut or padded)"
            )
    elif suffix == ".stl":
        if size >= 84 and size == 84 + 50 * struct.unpack("<I", head[80:84])[0]:
            return  # binary: an 80-byte header, the triangle count, 50 bytes per triangle
        if b"\0" in head or head.lstrip()[:5].lower() != b"solid":
            raise PointFileError(
                path,
                f"neither a binary STL (its {size} bytes are not 84 + 50 per triangle it states) "
                "nor an ASCII one (no 'solid' keyword)",
            )
    else:  # .gltf: a JSON object (its buffers in files beside it, or embedded)
        nul = head.find(b"\0")
        if nul >= 0:
            raise PointFileError(path, f"not a glTF file (a NUL byte at offset {nul})")
        if not head.lstrip(b" \t\r\n\xef\xbb\xbf").startswith(b"{"):
            raise PointFileError(path, "not a glTF file (not a JSON object)")


def _check_gltf(path: str) -> None:
    """A glTF's JSON parses, and every buffer it keeps in a file is beside it."""
    try:
        with open(path, "rb") as f:
            gltf = json.loads(_decode(path, f.read()))
    except json.JSONDecodeError as e:
        raise PointFileError(f"{path}:{e.lineno}", f"not valid JSON ({e.msg})") from None
    buffers = gltf.get("buffers", []) if isinstance(gltf, dict) else []
    for i, buffer in enumerate(buffers if isinstance(buffers, list) else []):
        uri = buffer.get("uri", "") if isinstance(buffer, dict) else ""
        if isinstance(uri, str) and uri and not uri.startswith("data:"):
            beside = os.path.join(os.path.dirname(path), uri)
            if not os.path.isfile(beside):
                raise PointFileError(
                    path,
                    f"its buffer {i} is the file {uri!r}, which is not beside it",
                    "copy the .gltf with its .bin files, or export a .glb (one file)",
                )


def _read_trimesh(path: str, suffix: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(vertices, triangles or None) of a GLB, glTF or STL file read by trimesh: every mesh of its
    scene, each moved by its node's transform, as one; a scene of points only as its points."""
    check_header(path)
    name = TRIMESH_FORMATS[suffix]
    if suffix == ".gltf":
        _check_gltf(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            geometries = trimesh.load_scene(path, file_type=suffix[1:], process=False).dump()
    except Exception as e:  # what trimesh's parsers meet: KeyError, ValueError, struct.error, ...
        why = f"{type(e).__name__}: {errors.one_line(e)[:120]}"
        raise PointFileError(path, f"not a readable {name} file ({why})") from None
    meshes = [g for g in geometries if isinstance(g, trimesh.Trimesh) and len(g.faces)]
    if meshes:
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        vertices = np.concatenate([np.asarray(m.vertices, np.float64) for m in meshes])
        faces = np.concatenate([np.asarray(m.faces, np.int64) + o for m, o in zip(meshes, offsets)])
        return vertices, faces
    points = [np.asarray(g.vertices, np.float64) for g in geometries if len(g.vertices)]
    if not points:
        raise PointFileError(path, f"the {name} file holds no mesh and no points")
    return np.concatenate(points), None


def read_points_file(path) -> tuple[np.ndarray, np.ndarray | None]:
    """(vertices f64[N, 3], triangles int[T, 3] or None) of a .npy, .txt/.xyz, .ply, .off, .obj,
    .glb, .gltf or .stl file.

    Either reads the file as its format defines it or raises PointFileError naming the file (and
    the line where there is one): wrong column counts, non-numeric, complex or non-finite
    values, empty files, degenerate clouds, coordinates too large to normalise, faces that refer
    to missing vertices."""
    path, suffix = _point_file_type(path)
    try:
        if suffix == ".npy":
            vertices, faces = _read_npy(path), None
        elif suffix in (".txt", ".xyz"):
            vertices, faces = _read_text_points(path), None
        elif suffix in TRIMESH_FORMATS:
            vertices, faces = _read_trimesh(path, suffix)
        else:
            with open(path, "rb") as f:
                data = f.read()
            if not data.strip():
                raise PointFileError(path, "no points (empty file)")
            if suffix == ".ply":
                vertices, faces = _read_ply(path, data)
            else:
                vertices, faces = (_read_off if suffix == ".off" else _read_obj)(
                    path, _decode(path, data)
                )
    except OSError as e:
        raise PointFileError(path, f"cannot read ({e.strerror or e})") from None
    check_cloud(path, vertices)
    if faces is not None and len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise PointFileError(path, "a face refers to a vertex that does not exist")
    return vertices, (faces if faces is not None and len(faces) else None)


def read_cloud(path, mesh_points: int, rng: np.random.Generator) -> np.ndarray:
    """The points of a point or mesh file (`read_points_file`): a point file's vertices f64[N, 3],
    or `mesh_points` area-weighted samples f32[mesh_points, 3] of a mesh's surface drawn from
    `rng`."""
    vertices, faces = read_points_file(path)
    if faces is None:
        return vertices
    return sample_surface(vertices, faces, mesh_points, rng, os.fspath(path))


def sample_surface(
    vertices: np.ndarray,
    faces: np.ndarray,
    num_points: int,
    rng: np.random.Generator,
    path: str = "mesh",
) -> np.ndarray:
    """Area-weighted uniform samples on a triangle mesh: f32[num_points, 3]."""
    tri = vertices[faces]  # (T, 3, 3)
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if area.sum() <= 0:
        raise PointFileError(path, "the mesh has zero surface area (every face is degenerate)")
    which = rng.choice(len(tri), num_points, p=area / area.sum())
    u, v = rng.random((2, num_points))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[which]
    return (t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])).astype(
        np.float32
    )
