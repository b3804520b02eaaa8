"""GLB, glTF (with its buffers) and STL (binary and ASCII) through trimesh, and OBJ (several
objects, materials) and PLY (binary and ASCII) through ddjax's own readers (ddjax/data/readers.py):
files written at test time by trimesh from procedural meshes and, where ../shared/data is present,
from the real ModelNet meshes, each read as the same triangles as the mesh written as OFF (read by
ddjax's OFF reader), so sampled from the same distribution; scenes flattened with their transforms;
classify ranks labels for GLB, STL and glTF."""

import json

import numpy as np
import pytest
import trimesh
from scipy import stats

import main
from ddjax.data import readers
from tests.conftest import reference_path

FORMATS = ("glb", "gltf", "stl", "stl_ascii")  # read by trimesh
OWN_FORMATS = ("obj", "ply", "ply_ascii")  # written by trimesh, read by ddjax's readers


def procedural() -> dict:
    """name -> trimesh Scene: three primitives and two objects placed by transforms."""
    box = trimesh.creation.box(extents=(1.0, 2.0, 0.5))
    scene = trimesh.Scene()
    scene.add_geometry(trimesh.creation.icosphere(subdivisions=1), transform=np.eye(4))
    moved = trimesh.transformations.rotation_matrix(np.pi / 3, (0, 0, 1))
    moved[:3, 3] = (2.0, -1.0, 0.5)
    scene.add_geometry(
        trimesh.creation.cylinder(radius=0.3, height=1.0, sections=12), transform=moved
    )
    return {
        "box": trimesh.Scene(box),
        "cylinder": trimesh.Scene(trimesh.creation.cylinder(radius=0.5, height=2.0, sections=16)),
        "icosphere": trimesh.Scene(trimesh.creation.icosphere(subdivisions=2)),
        "two_objects": scene,
    }


def write(scene: trimesh.Scene, folder, name: str, fmt: str):
    """`scene` written by trimesh as `fmt`; a glTF with its buffer in a file beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = fmt.split("_")[0]
    if fmt.startswith("stl"):  # STL holds one mesh: the scene flattened
        data = scene.to_mesh().export(file_type=fmt)
    elif fmt.startswith("ply"):
        encoding = "ascii" if fmt == "ply_ascii" else "binary"
        data = scene.to_mesh().export(file_type="ply", encoding=encoding)
    elif fmt == "obj":  # one `o` object per mesh, with a material library beside it
        data = "mtllib materials.mtl\nusemtl red\n" + scene.export(file_type="obj")
        (folder / "materials.mtl").write_text("newmtl red\nKd 1 0 0\n")
    else:
        data = scene.export(file_type=fmt)
    if fmt == "gltf":  # {file name: bytes}: the .gltf JSON and its buffers
        for file, content in data.items():
            target = folder / (f"{name}.gltf" if file == "model.gltf" else file)
            target.write_bytes(content)
    else:
        (folder / f"{name}.{suffix}").write_bytes(
            data if isinstance(data, bytes) else data.encode()
        )
    return folder / f"{name}.{suffix}"


def triangles(vertices: np.ndarray, faces: np.ndarray, decimals=5) -> np.ndarray:
    """The mesh as a sorted array of triangles, each its 3 corners rounded and sorted: equal for
    two meshes of the same surface whatever their vertex order and sharing."""
    corners = np.round(vertices[faces], decimals) + 0.0  # (T, 3, 3); -0.0 -> 0.0
    corners = np.array([sorted(map(tuple, t)) for t in corners])
    return corners[np.lexsort(corners.reshape(len(corners), -1).T[::-1])]


def as_off(scene: trimesh.Scene, path) -> tuple[np.ndarray, np.ndarray]:
    """The scene flattened and written as OFF by trimesh, read back by ddjax's OFF reader."""
    path.write_text(scene.to_mesh().export(file_type="off"))
    return readers.read_points_file(path)


@pytest.mark.parametrize("name", sorted(procedural()))
def test_each_format_reads_the_triangles_of_its_off(tmp_path, name):
    scene = procedural()[name]
    want_v, want_f = as_off(scene, tmp_path / f"{name}.off")
    want = triangles(want_v, want_f)
    rng = np.random.default_rng(0)
    reference = readers.sample_surface(want_v, want_f, 4000, rng)
    for fmt in FORMATS + OWN_FORMATS:
        path = write(scene, tmp_path / fmt, name, fmt)
        readers.check_header(path)
        vertices, faces = readers.read_points_file(path)
        assert faces is not None and faces.shape[1] == 3, (name, fmt)
        np.testing.assert_allclose(triangles(vertices, faces), want, atol=2e-5, err_msg=fmt)
        # the same surface, so samples from the same distribution (a seeded generator each)
        got = readers.sample_surface(vertices, faces, 4000, np.random.default_rng(1))
        for axis in range(3):
            assert stats.ks_2samp(got[:, axis], reference[:, axis]).pvalue > 1e-3, (fmt, axis)


def test_a_scene_is_flattened_with_its_transforms(tmp_path):
    scene = procedural()["two_objects"]
    vertices, faces = readers.read_points_file(write(scene, tmp_path, "two", "glb"))
    # the cylinder is centred on (2, -1, 0.5), not on the origin where its mesh is defined
    cylinder = vertices[vertices[:, 0] > 1.2]
    np.testing.assert_allclose(cylinder[:, :2].mean(axis=0), (2.0, -1.0), atol=1e-6)
    np.testing.assert_allclose([cylinder[:, 2].min(), cylinder[:, 2].max()], (0.0, 1.0), atol=1e-6)
    assert len(faces) == sum(len(g.faces) for g in scene.geometry.values())


def test_points_only_scene_reads_as_points(tmp_path):
    cloud = trimesh.PointCloud(np.random.default_rng(0).normal(size=(50, 3)))
    path = tmp_path / "cloud.glb"
    path.write_bytes(trimesh.Scene(cloud).export(file_type="glb"))
    vertices, faces = readers.read_points_file(path)
    assert faces is None
    np.testing.assert_allclose(vertices, cloud.vertices, atol=1e-6)


@pytest.mark.reference_data
def test_real_modelnet_meshes_in_each_format(tmp_path):
    meshes = sorted(reference_path("meshes").glob("*/*/*/*.off"))
    assert meshes
    for mesh in meshes:
        vertices, faces = readers.read_points_file(mesh)
        scene = trimesh.Scene(trimesh.Trimesh(vertices, faces, process=False))
        for fmt in FORMATS:
            path = write(scene, tmp_path / fmt, mesh.stem, fmt)
            got_v, got_f = readers.read_points_file(path)
            # the same triangles in the same order (trimesh keeps both, unprocessed), to float32
            # rounding of the raw ModelNet units (hundreds)
            np.testing.assert_allclose(
                got_v[got_f], vertices[faces], rtol=1e-6, atol=1e-6, err_msg=f"{mesh.name} {fmt}"
            )


def test_classify_ranks_labels_for_glb_stl_and_gltf(run_dir, tmp_path, capsys):
    scene = procedural()["two_objects"]
    files = [write(scene, tmp_path / fmt, "shape", fmt) for fmt in ("glb", "stl", "gltf")]
    capsys.readouterr()
    argv = [
        "--config=configs/classify.py",
        f"--config.checkpoint={run_dir}",
        "--config.labels=chair,table,sofa",
        "--config.num_paths=2",
        "--config.npoints=256",
        "--config.point_all=300",
        "--config.input=" + ",".join(str(f) for f in files),
    ]
    assert main.run_command(argv) == 0
    out = capsys.readouterr()
    results = [json.loads(line) for line in out.out.splitlines() if line.startswith("{")]
    assert [r["file"] for r in results] == [str(f) for f in files]
    for r in results:
        assert sorted(x["label"] for x in r["ranking"]) == ["chair", "sofa", "table"]
        scores = [x["score"] for x in r["ranking"]]
        assert scores == sorted(scores, reverse=True)
    assert out.err == ""  # trimesh's own log lines stay off the console
