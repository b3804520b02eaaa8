"""The ModelNet txt reader: real files parse; malformed files name the file and line."""

import numpy as np
import pytest

from ddjax.data import readers
from tests.conftest import MODELNET_DIR, reference_path


@pytest.mark.reference_data
def test_reads_real_modelnet_file():
    path = sorted(reference_path(MODELNET_DIR.name).glob("airplane/*.txt"))[0]
    data = readers.read_modelnet_txt(path)
    assert data.shape == (10000, 6) and data.dtype == np.float32
    first = [float(v) for v in path.read_text().splitlines()[0].split(",")]
    np.testing.assert_allclose(data[0], first, rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(data[:, 3:], axis=1), 1.0, atol=1e-3)  # unit normals


@pytest.mark.parametrize(
    "content, match",
    [
        ("", r"no points \(empty file\)"),
        ("1,2,3,0,0,1\n1,2,3\n", r":2\): expected 6 comma-separated values"),
        ("1,2,x,0,0,1\n", r":1\): not a number"),
        ("1,2,3,0,0,1\nnan,0,0,0,0,1\n", r":2\): non-finite value"),
    ],
)
def test_malformed_files(tmp_path, content, match):
    path = tmp_path / "bad.txt"
    path.write_text(content)
    with pytest.raises(ValueError, match=rf"{path}{match}" if match.startswith(":") else match):
        readers.read_modelnet_txt(path)


# read_points_file (the classify job's reader): it reads what the formats allow and refuses, naming
# the file (and the line), what would otherwise be classified as a made-up cloud.
from tests.test_classify import CUBE_F as QUADS  # noqa: E402  (the cube of the format tests)
from tests.test_classify import CUBE_V as CUBE  # noqa: E402


def _npy_with_header(path, header: dict, body: bytes = b""):
    """An .npy file with a hand-written header (shape and dtype as given), then `body`."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    path.write_bytes(np.lib.format.magic(1, 0) + buf.getvalue() + body)


@pytest.mark.parametrize(
    "name, content, match",
    [
        ("empty.xyz", "", r"empty\.xyz\): no points"),
        ("nan.xyz", "0 0 0\nnan 1 2\n", r"nan\.xyz\): non-finite coordinates"),
        (
            "bad.txt",
            "1 2\n",
            r"bad\.txt:1\): 2 value\(s\) on the first point's line; a point needs at least 3",
        ),
        (
            "bad.off",
            "OFF\n3 1 0\n0 0 0\n",
            r"bad\.off\): the OFF header promises 3 vertices, the file holds 1",
        ),
        (
            "index.off",
            "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n",
            r"refers to a vertex that does not exist",
        ),
        ("bad.ply", "not a ply", r"bad\.ply\): not a PLY file"),
        ("bad.3mf", "PK", r"unsupported file type '\.3mf'"),
        # 6 values: not 2 points
        ("two.txt", "1 2\n3 4\n5 6\n", r"two\.txt:1\): 2 value\(s\) on the first point's line"),
        (
            "ragged.xyz",
            "0 0 0\n1 1 1 1\n",
            r"ragged\.xyz:2\): 4 values, but the first point's line has 3",
        ),
        ("word.txt", "0 0 0\n1 x 1\n", r"word\.txt:2\): not a number"),
        (
            "same.xyz",
            "1 2 3\n1 2 3\n1 2 3\n",
            r"same\.xyz\): a degenerate cloud, all 3 points in one place",
        ),
        (
            "huge.xyz",
            "1e200 0 0\n0 1e200 0\n0 0 0\n",
            r"huge\.xyz\): coordinates up to 1e\+200 are too large",
        ),
        ("inf.xyz", "0 0 0\n1e400 1 2\n", r"inf\.xyz\): non-finite coordinates .* at point 1"),
        ("blank.txt", "\n \n", r"blank\.txt\): no points \(empty file"),
        ("comments.txt", "# only a comment\n", r"comments\.txt\): no points"),
        ("binary.txt", b"\xff\xfe\x00\x01", r"binary\.txt\): not a text file"),
        ("minus.off", "OFF\n-1 0 0\n0 0 0\n", r"minus\.off\): negative count"),
        (
            "short.off",
            "OFF\n4 0 0\n0 0 0\n1 0 0\n0 1 0\n",
            r"short\.off\): the OFF header promises 4 vertices, the file holds 3",
        ),
        (
            "face.off",
            "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n",
            r"face\.off:6\): OFF face 0 has 2 vertices",
        ),
        ("head.off", "OFF\nx y z\n", r"head\.off\): malformed OFF header"),
        ("v.obj", "v 0 0 0\nv 1 0\n", r"v\.obj:2\): a vertex needs x y z"),
        (
            "f.obj",
            "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n",
            r"f\.obj:4\): a face needs 3 or more vertex numbers",
        ),
        (
            "flat.obj",
            "v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n",
            None,
        ),  # read, but zero area when sampled
        (
            "nohead.ply",
            "ply\nformat ascii 1.0\n",
            r"nohead\.ply\): not a PLY file \(no 'end_header' line\)",
        ),
        (
            "count.ply",
            "ply\nformat ascii 1.0\nelement vertex -2\nend_header\n",
            r"count\.ply\): PLY header line 3",
        ),
        (
            "type.ply",
            "ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n0\n",
            r"line 4",
        ),
        (
            "lying.ply",
            "ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\nproperty float x\n"
            "property float y\nproperty float z\nend_header\n" + "\0" * 24,
            r"lying\.ply\): malformed PLY body",
        ),
        (
            "nox.ply",
            "ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1\n",
            r"nox\.ply\): the PLY vertex element has no x, y, z",
        ),
    ],
)
def test_point_files_refused_with_the_file_and_line(tmp_path, name, content, match):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    if match is None:  # a valid file whose mesh has no area: refused when sampled, naming the file
        vertices, faces = readers.read_points_file(path)
        with pytest.raises(
            readers.PointFileError, match=rf"{name}\): the mesh has zero surface area"
        ):
            readers.sample_surface(vertices, faces, 10, np.random.default_rng(0), str(path))
        return
    with pytest.raises(readers.PointFileError, match=match):
        readers.read_points_file(path)


def test_npy_files_refused_without_loading_what_they_claim(tmp_path):
    cases = {
        "empty.npy": (lambda p: p.write_bytes(b""), r"empty file"),
        "pickled.npy": (
            lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True),
            r"not a plain numeric \.npy array",
        ),
        "archive.npy": (lambda p: np.savez(open(p, "wb"), a=np.ones((5, 3))), r"an \.npz archive"),
        "text.npy": (lambda p: p.write_text("1 2 3\n"), r"no NUMPY magic"),
        "complex.npy": (
            lambda p: np.save(p, np.ones((5, 3)) * (1 + 1j)),
            r"dtype complex128 is not real numbers",
        ),
        "bool.npy": (
            lambda p: np.save(p, np.ones((5, 3), bool)),
            r"dtype bool is not real numbers",
        ),
        "strings.npy": (lambda p: np.save(p, np.full((5, 3), "a")), r"is not real numbers"),
        "flat.npy": (
            lambda p: np.save(p, np.ones(9)),
            r"expected an \(N, >= 3\) array of points, got shape \(9,\)",
        ),
        "none.npy": (lambda p: np.save(p, np.ones((0, 3))), r"none\.npy\): no points"),
        # a header that claims 10^12 points over 24 bytes of data: refused, not allocated (24 TB)
        "lying.npy": (
            lambda p: _npy_with_header(
                p, {"descr": "<f8", "fortran_order": False, "shape": (10**12, 3)}, b"\0" * 24
            ),
            r"not a plain numeric",
        ),
    }
    for name, (write, match) in cases.items():
        write(tmp_path / name)
        with pytest.raises(readers.PointFileError, match=match):
            readers.read_points_file(tmp_path / name)


def test_valid_files_the_old_reader_refused(tmp_path):
    """PLY comments that contain 'end_header', a face property after the index list (binary and
    ASCII), OFF '#' comments, a UTF-8 byte-order mark, integer .npy arrays: read exactly."""
    head = (
        "ply\nformat {}\ncomment written before end_header was known\nelement vertex 8\nproperty "
        "float x\n"
        "property float y\nproperty float z\nelement face 6\nproperty list uchar int "
        "vertex_indices\n"
        "property uchar flags\nend_header\n"
    )
    body = CUBE.astype("<f4").tobytes() + b"".join(
        np.uint8(4).tobytes() + np.asarray(f, "<i4").tobytes() + np.uint8(7).tobytes()
        for f in QUADS
    )
    (tmp_path / "flags.ply").write_bytes(head.format("binary_little_endian 1.0").encode() + body)
    (tmp_path / "flags_ascii.ply").write_text(
        head.format("ascii 1.0")
        + "".join(f"{x} {y} {z}\n" for x, y, z in CUBE)
        + "".join(f"4 {' '.join(map(str, f))} 7\n" for f in QUADS)
    )
    (tmp_path / "comments.off").write_text(
        "# a comment\nOFF # the keyword\n8 6 0\n"
        + "".join(f"{x} {y} {z} # vertex\n" for x, y, z in CUBE)
        + "".join(f"4 {' '.join(map(str, f))}\n" for f in QUADS)
    )
    for name in ("flags.ply", "flags_ascii.ply", "comments.off"):
        vertices, faces = readers.read_points_file(tmp_path / name)
        np.testing.assert_array_equal(vertices, CUBE, err_msg=name)
        expected = [(q[0], q[i], q[i + 1]) for q in QUADS for i in (1, 2)]  # fans of the quads
        np.testing.assert_array_equal(faces, expected, err_msg=name)
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + b"0,0,0\n1,2,3\n")
    vertices, faces = readers.read_points_file(tmp_path / "bom.txt")
    np.testing.assert_array_equal(vertices, [[0, 0, 0], [1, 2, 3]]) and faces is None
    np.save(tmp_path / "ints.npy", np.arange(12, dtype=np.int16).reshape(4, 3))
    np.testing.assert_array_equal(
        readers.read_points_file(tmp_path / "ints.npy")[0], np.arange(12).reshape(4, 3)
    )


def test_off_files_with_colours_normals_and_face_colours(tmp_path):
    """Per-vertex colours (once blamed as 'face 0 has 0 vertices'), COFF/NOFF keywords, face
    colours and comments: the vertices are the first three values of each vertex line."""
    xyz = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float64)
    extra = ["255 0 0 255", "0.1 0.2 0.3", "", "0 0 1 0 255 255 0 255"]
    faces = "3 0 1 2 255 0 0\n3 0 2 3\n"
    for keyword, cols in [("OFF", extra[0]), ("COFF", extra[0]), ("NOFF", extra[1]), ("OFF", "")]:
        body = "".join(f"{x:g} {y:g} {z:g} {cols}\n" for x, y, z in xyz)
        path = tmp_path / f"{keyword.lower()}{len(cols)}.off"
        path.write_text(f"{keyword}\n# a comment\n4 2 0\n{body}{faces}")
        readers.check_header(path)
        vertices, triangles = readers.read_points_file(path)
        np.testing.assert_array_equal(vertices, xyz)
        np.testing.assert_array_equal(triangles, [[0, 1, 2], [0, 2, 3]])
    # ModelNet's glued header, and vertex data wrapped across lines (read as a token stream)
    (tmp_path / "glued.off").write_text("OFF4 1 0\n0 0 0 1 0\n0 0 1 0\n0 0 1\n3 0 1 2\n")
    vertices, triangles = readers.read_points_file(tmp_path / "glued.off")
    np.testing.assert_array_equal(vertices, xyz)
    np.testing.assert_array_equal(triangles, [[0, 1, 2]])
    (tmp_path / "four.off").write_text("4OFF\n1 0 0\n0 0 0 1\n")
    with pytest.raises(readers.PointFileError, match="only 3-D OFF variants"):
        readers.read_points_file(tmp_path / "four.off")


def test_the_cheap_check_reads_only_the_head(tmp_path):
    """`check_header` refuses from a file's first 64 KiB what the whole read would refuse later:
    a 3 GB sparse .xyz (NUL bytes), a first line longer than 64 KiB, not OFF, a
    truncated PLY header; a valid file passes. The streaming reader refuses a long line in the
    middle as soon as it reaches it."""
    sparse = tmp_path / "sparse.xyz"
    with open(sparse, "wb") as f:
        f.truncate(3 << 30)  # 3 GB of NUL bytes, not stored on disk
    with pytest.raises(readers.PointFileError, match=r"sparse\.xyz\): not a text file \(a NUL"):
        readers.check_header(sparse)
    long = tmp_path / "long.txt"
    long.write_text("1" * (200 << 10))
    with pytest.raises(readers.PointFileError, match="first line is longer than 64 KiB"):
        readers.check_header(long)
    middle = tmp_path / "middle.xyz"
    middle.write_text("0 0 0\n1 1 1\n" + "2 " * (40 << 10) + "\n3 3 3\n")
    readers.check_header(middle)  # the head is fine
    with pytest.raises(readers.PointFileError, match=r"middle\.xyz:3\): a line longer than 64 KiB"):
        readers.read_points_file(middle)
    (tmp_path / "not.off").write_text("PLY\n3 1 0\n")
    with pytest.raises(readers.PointFileError, match="not an OFF file"):
        readers.check_header(tmp_path / "not.off")
    (tmp_path / "cut.ply").write_bytes(b"ply\nformat ascii 1.0\nelement vertex 3\n")
    with pytest.raises(readers.PointFileError, match="no 'end_header'"):
        readers.check_header(tmp_path / "cut.ply")
    good = tmp_path / "good.xyz"
    good.write_text("".join(f"{i} {i * i} {-i}\n" for i in range(20000)))  # beyond 64 KiB
    readers.check_header(good)
    assert len(readers.read_points_file(good)[0]) == 20000
