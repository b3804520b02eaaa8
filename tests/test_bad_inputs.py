"""The bad-input suite: malformed files of every supported format, bad values for every
job's config, broken dataset folders, checkpoints and run folders, each run through main.py's whole
command in this process (`main.run_command`). Every case must exit non-zero with exactly one line
`error: <what> (<where>): <why>; <what to do>` whose <where> names the expected file or key, print
no traceback, and leave the run folder it was pointed at unchanged. The README's reliability table
counts these cases (`CASES`)."""

import io
import json
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import main
from ddjax import run_folder
from tests.conftest import reference_path

ERROR_LINE = re.compile(r"^error: [^()]+ \((?P<where>[^)]*)\): (?P<why>.+); (?P<todo>.+)$")


def snapshot(folder: pathlib.Path) -> dict:
    """Every file of `folder` with its size, mtime and (small files) content; the run-folder lock
    aside (every writing job, refused or not, records itself there: `run_folder.held`)."""
    return {
        str(p.relative_to(folder)): (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            p.read_bytes() if p.stat().st_size < 1 << 20 else b"",
        )
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != run_folder.LOCK
    }


def run_refused(capsys, argv: list[str], where: str, folder: pathlib.Path | None = None) -> str:
    """Runs `argv` in-process; asserts the one-line refusal naming `where` (a substring of <where>)
    and, for `folder`, that nothing in it changed. Returns the line."""
    before = snapshot(folder) if folder is not None else None
    capsys.readouterr()
    code = main.run_command(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert code != 0, f"accepted: {argv}"
    assert "Traceback" not in err and "bug in ddjax" not in err, err[-3000:]
    assert len(lines) == 1, err[-3000:]
    match = ERROR_LINE.match(lines[0])
    assert match, lines[0]
    assert where in match["where"], (where, lines[0])
    if folder is not None:
        assert snapshot(folder) == before, f"{argv} changed {folder}"
    return lines[0]


# ------------------------------------------------------------------------------------------ point
# files
def _stl(corners) -> bytes:
    """A binary STL of the triangles whose corners are `corners` (3 rows per triangle)."""
    corners = np.asarray(corners, "<f4").reshape(-1, 3, 3)
    rows = [np.zeros(3, "<f4").tobytes() + t.tobytes() + b"\0\0" for t in corners]
    return b"\0" * 80 + struct.pack("<I", len(rows)) + b"".join(rows)


def _gltf_missing_buffer() -> str:
    """A glTF whose one triangle's data is in a buffer file that is not there."""
    return json.dumps(
        {
            "asset": {"version": "2.0"},
            "scene": 0,
            "scenes": [{"nodes": [0]}],
            "nodes": [{"mesh": 0}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
            "buffers": [{"uri": "missing.bin", "byteLength": 36}],
            "bufferViews": [{"buffer": 0, "byteLength": 36}],
            "accessors": [
                {
                    "bufferView": 0,
                    "componentType": 5126,
                    "count": 3,
                    "type": "VEC3",
                    "min": [0, 0, 0],
                    "max": [1, 1, 0],
                }
            ],
        }
    )


def _npy(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _npy_header(header: dict, body: bytes) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return np.lib.format.magic(1, 0) + buf.getvalue() + body


def _npz() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, a=np.ones((5, 3)))
    return buf.getvalue()


CUBE = "".join(f"{x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1))
PLY_HEAD = (
    "ply\nformat ascii 1.0\nelement vertex {n}\nproperty float x\nproperty float "
    "y\nproperty float z\n"
)
CLOUD = np.random.default_rng(0).normal(size=(64, 3))
# name -> (bytes or text, the <where> expected: the file, and its line where there is one)
POINT_FILES = {
    "empty.npy": (b"", "empty.npy"),
    "pickled.npy": (_npy(np.array([{"a": 1}], dtype=object)), "pickled.npy"),
    "archive.npy": (_npz(), "archive.npy"),
    "text.npy": ("1 2 3\n", "text.npy"),
    "complex.npy": (_npy(CLOUD * (1 + 1j)), "complex.npy"),
    "bool.npy": (_npy(CLOUD > 0), "bool.npy"),
    "strings.npy": (_npy(np.full((64, 3), "a")), "strings.npy"),
    "structured.npy": (
        _npy(np.zeros(64, dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")])),
        "structured.npy",
    ),
    "flat.npy": (_npy(np.ones(9)), "flat.npy"),
    "cube3d.npy": (_npy(np.ones((4, 4, 3))), "cube3d.npy"),
    "twocol.npy": (_npy(np.ones((64, 2))), "twocol.npy"),
    "none.npy": (_npy(np.ones((0, 3))), "none.npy"),
    "lying.npy": (
        _npy_header({"descr": "<f8", "fortran_order": False, "shape": (10**12, 3)}, b"\0" * 24),
        "lying.npy",
    ),
    "truncated.npy": (_npy(CLOUD)[:-100], "truncated.npy"),
    "nan.npy": (_npy(np.where(np.arange(64)[:, None] == 5, np.nan, CLOUD)), "nan.npy"),
    "inf.npy": (_npy(np.where(np.arange(64)[:, None] == 5, np.inf, CLOUD)), "inf.npy"),
    "huge.npy": (_npy(CLOUD * 1e200), "huge.npy"),
    "same.npy": (_npy(np.ones((64, 3))), "same.npy"),
    "few.npy": (_npy(CLOUD[:3]), "few.npy"),
    "empty.txt": ("", "empty.txt"),
    "blank.txt": ("\n \n\t\n", "blank.txt"),
    "comments.txt": ("# x y z\n# nothing else\n", "comments.txt"),
    "binary.txt": (b"\xff\xfe\x00\x01garbage", "binary.txt"),
    "two.txt": ("1 2\n3 4\n5 6\n", "two.txt:1"),
    "one.xyz": ("1\n2\n3\n", "one.xyz:1"),
    "ragged.xyz": ("0 0 0\n1 1 1 1\n", "ragged.xyz:2"),
    "short.xyz": ("0 0 0\n1 1\n", "short.xyz:2"),
    "word.txt": ("0 0 0\n1 x 1\n", "word.txt:2"),
    "hex.txt": ("0 0 0\n0x1 0 0\n", "hex.txt:2"),
    "nan.xyz": ("0 0 0\nnan 1 2\n1 1 1\n", "nan.xyz"),
    "inf.xyz": ("0 0 0\n1e400 1 2\n", "inf.xyz"),
    "huge.xyz": ("1e200 0 0\n0 1e200 0\n0 0 0\n", "huge.xyz"),
    "same.xyz": ("1 2 3\n" * 40, "same.xyz"),
    "few.xyz": ("0 0 0\n1 1 1\n", "few.xyz"),
    "semicolon.txt": ("0;0;0\n1;1;1\n", "semicolon.txt:1"),
    "magic.off": ("OFX\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "magic.off"),
    "header.off": ("OFF\nx y z\n", "header.off"),
    "negative.off": ("OFF\n-1 0 0\n0 0 0\n", "negative.off"),
    "fewer.off": ("OFF\n4 0 0\n0 0 0\n1 0 0\n0 1 0\n", "fewer.off"),
    "face2.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n2 0 1\n", "face2.off:6"),
    "index.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "index.off"),
    "cut.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1\n", "cut.off:6"),
    "word.off": ("OFF\n3 1 0\n0 0 a\n1 0 0\n0 1 0\n3 0 1 2\n", "word.off:3"),
    "nan.off": ("OFF\n3 1 0\nnan 0 0\n1 0 0\n0 1 0\n3 0 1 2\n", "nan.off"),
    "flat.off": ("OFF\n3 1 0\n0 0 0\n1 0 0\n2 0 0\n3 0 1 2\n", "flat.off"),
    "empty.off": ("", "empty.off"),
    "onlyhead.off": ("OFF\n", "onlyhead.off"),
    "vertex.obj": ("v 0 0 0\nv 1 0\n", "vertex.obj:2"),
    "zero.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 0 1 2\n", "zero.obj:4"),
    "range.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 9\n", "range.obj"),
    "word.obj": ("v 0 0 0\nv 1 x 0\nv 0 1 0\nf 1 2 3\n", "word.obj:2"),
    "nan.obj": ("v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n", "nan.obj"),
    "novertex.obj": ("# nothing\ng group\n", "novertex.obj"),
    "flat.obj": ("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "flat.obj"),
    "face.obj": ("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2\n", "face.obj:4"),
    "binary.obj": (b"\x00\xff\xfe\x80", "binary.obj"),
    "magic.ply": ("not a ply\n", "magic.ply"),
    "noend.ply": ("ply\nformat ascii 1.0\n", "noend.ply"),
    "count.ply": ("ply\nformat ascii 1.0\nelement vertex -2\nend_header\n", "count.ply"),
    "type.ply": (
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty quad x\nend_header\n0\n",
        "type.ply",
    ),
    "lying.ply": (
        "ply\nformat binary_little_endian 1.0\nelement vertex 1000000000\nproperty float x\n"
        "property float y\nproperty float z\nend_header\n" + "\0" * 24,
        "lying.ply",
    ),
    "noxyz.ply": (
        "ply\nformat ascii 1.0\nelement vertex 1\nproperty float a\nend_header\n1\n",
        "noxyz.ply",
    ),
    "format.ply": (
        "ply\nformat binary_middle_endian 1.0\nelement vertex 1\nproperty float x\nend_header\n",
        "format.ply",
    ),
    "short.ply": (PLY_HEAD.format(n=8) + "end_header\n" + CUBE[:20], "short.ply"),
    "nan.ply": (
        PLY_HEAD.format(n=8) + "end_header\n" + CUBE.replace("1 1 1", "nan 1 1"),
        "nan.ply",
    ),
    "face.ply": (
        PLY_HEAD.format(n=8)
        + "element face 1\nproperty list uchar int vertex_indices\nend_header\n"
        + CUBE
        + "3 0 1 99\n",
        "face.ply",
    ),
    "novertex.ply": (
        "ply\nformat ascii 1.0\nelement face 0\nproperty list uchar int vertex_indices\n"
        "end_header\n",
        "novertex.ply",
    ),
    "truncated.ply": (
        "ply\nformat binary_little_endian 1.0\nelement vertex 8\nproperty float x\nproperty float "
        "y\n"
        "property float z\nend_header\n" + "\0" * 50,
        "truncated.ply",
    ),
    "empty.ply": ("", "empty.ply"),
    # the formats trimesh reads: refused by ddjax's header check, or with trimesh's reason
    "cloud.stl": ("solid x\n", "cloud.stl"),
    "count.stl": (b"\0" * 80 + struct.pack("<I", 5) + b"\0" * 50, "count.stl"),
    "nan.stl": (_stl([[np.nan, 0, 0], [1, 0, 0], [0, 1, 0]] * 10), "nan.stl"),
    "flat.stl": (_stl([[0, 0, 0], [1, 0, 0], [2, 0, 0]] * 10), "flat.stl"),
    "magic.glb": (b"glTX" + struct.pack("<II", 2, 12), "magic.glb"),
    "version.glb": (b"glTF" + struct.pack("<II", 1, 12), "version.glb"),
    "cut.glb": (b"glTF" + struct.pack("<II", 2, 400) + b"\0" * 20, "cut.glb"),
    "garbage.glb": (
        b"glTF" + struct.pack("<II", 2, 32) + struct.pack("<II", 12, 0x4E4F534A) + b"{garbage!!!}",
        "garbage.glb",
    ),
    "empty.glb": (b"", "empty.glb"),
    "list.gltf": ("[1, 2]", "list.gltf"),
    "binary.gltf": (b"{\0\0", "binary.gltf"),
    "buffer.gltf": (_gltf_missing_buffer(), "buffer.gltf"),
    "json.gltf": ('{"asset": {"version": "2.0"}, "meshes": [', "json.gltf:1"),
    "cloud.pcd": ("# .PCD v0.7\n", "config.input"),
    "noextension": ("0 0 0\n", "config.input"),
}


@pytest.fixture(scope="module")
def fuzz_run(run_dir, tmp_path_factory) -> pathlib.Path:
    """A copy of the session's 2-step tiny run: the folder every case points at,
    checked unchanged."""
    copy = tmp_path_factory.mktemp("fuzz") / "run"
    shutil.copytree(run_dir, copy)
    return copy


@pytest.mark.parametrize("name", sorted(POINT_FILES))
def test_point_files(capsys, tmp_path, fuzz_run, name):
    content, where = POINT_FILES[name]
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    line = run_refused(
        capsys,
        [
            "--config=configs/classify.py",
            f"--config.checkpoint={fuzz_run}",
            "--config.labels=chair,table",
            f"--config.input={path}",
        ],
        where if where.startswith("config.") else f"{tmp_path}/{where}",
        fuzz_run,
    )
    assert where.startswith("config.") or line.split("(", 1)[1].split(")")[0].endswith(where), line


# ------------------------------------------------------------------------------------------- job
# configs (job config, overrides, key the error must name); {run} is the fuzz run folder, {tmp} the
# case's tmp_path.
PRETRAIN = [
    "--config=configs/pretrain.py:smoke",
    "--config.data_dir={tmp}/no_data",
    "--config.auto_prepare=False",
]
ZEROSHOT = [
    "--config=configs/zeroshot.py:modelnet40",
    "--config.checkpoint={run}",
    "--config.data_dir={tmp}/no_data",
]
ATTACK = [
    "--config=configs/attack.py:modelnet40",
    "--config.checkpoint={run}",
    "--config.data_dir={tmp}/no_data",
]
CLASSIFY = [
    "--config=configs/classify.py",
    "--config.checkpoint={run}",
    "--config.labels=chair,table",
    "--config.input={tmp}/cloud.xyz",
]
EXPORT = [
    "--config=configs/export.py",
    "--config.checkpoint={run}",
    "--config.labels=chair,table",
]
CACHE = [
    "--config=configs/teacher_cache.py:smoke",
    "--config.data_dir={tmp}/no_data",
    "--config.teacher={tmp}",
]
DEMO = ["--config=configs/kernels_demo.py:smoke"]
CONVERT = ["--config=configs/convert.py", "--config.source={tmp}/cloud.xyz"]
CERTIFY = [
    "--config=configs/certify.py:modelnet40",
    "--config.checkpoint={run}",
    "--config.data_dir={tmp}/no_data",
]
CONFIG_CASES = [
    (ZEROSHOT, ["--config.ratio=1e39"], "config.ratio"),
    (ZEROSHOT, ["--workdir={run}"], "--workdir"),  # the checkpoint's own run folder
    # more than any device holds, refused before compiling, with the estimate
    (ZEROSHOT, ["--config.num_paths=2000000000", "--config.t=500"], "config.num_paths"),
    (ZEROSHOT, ["--config.num_paths=2000000000", "--config.t=0"], "config.num_paths"),
    (CLASSIFY, ["--config.num_paths=2000000000"], "config.num_paths"),
    # the exported classifier (configs/export.py)
    (EXPORT, ["--config.platforms=gpu"], "config.platforms"),
    (EXPORT, ["--config.platforms=cpu,cpu"], "config.platforms"),
    (EXPORT, ["--config.input_points=100"], "config.input_points"),
    (EXPORT, ["--config.labels="], "config.labels"),
    (EXPORT, ["--config.checkpoint={tmp}/nowhere"], "config.checkpoint"),
    (EXPORT, ["--workdir={run}"], "--workdir"),  # a pretraining run's folder
    (EXPORT[:2], [], "--workdir"),
    # folder datasets (configs/prepare.py:folder): a bad name, one never prepared
    (ZEROSHOT, ["--config.dataset=folder/"], "config.dataset"),
    (ZEROSHOT, ["--config.dataset=folder/../x"], "config.dataset"),
    (ZEROSHOT, ["--config.dataset=folder/nothing"], "folder/nothing"),
    (CLASSIFY, ["--config.dataset=modelnet41"], "config.dataset"),
    (CLASSIFY, ["--config.dataset=folder/nothing"], "config.labels"),  # labels given too
    (CLASSIFY, ["--config.dataset=folder/nothing", "--config.labels="], "folder/nothing"),
    (ATTACK, ["--config.settings=2000000000:100"], "config.settings"),
    (CERTIFY, ["--config.num_paths=2000000000"], "config.num_paths"),
    (PRETRAIN, ["--config.eval.num_paths=2000000000"], "config.eval.num_paths"),
    # repeated entries would run twice and report two rows of one result
    (ATTACK, ["--config.settings=8:100,16:500,8:100"], "config.settings"),
    (ATTACK, ["--config.eps=0.04,0.04"], "config.eps"),
    (ATTACK, ["--config.attacks=pgd,ifgm,pgd"], "config.attacks"),
    (ATTACK, ["--config.modes=paper,paper"], "config.modes"),
    (CERTIFY, ["--config.t_values=300,300"], "config.t_values"),
    (ZEROSHOT, ["--config.ratios=0.1,0.1"], "config.ratios"),
    (PRETRAIN, ["--config.warmup_epochs=301"], "config.warmup_epochs"),
    *[
        (PRETRAIN, [f"--config.{k}={v}"], f"config.{k}")
        for k, v in [
            ("lr", -1),
            ("lr", 0),
            ("lr", "nan"),
            ("lr", "inf"),
            ("weight_decay", -1),
            ("batch_size", 0),
            ("batch_size", -3),
            ("num_points", 8),
            ("epochs", 0),
            ("total_steps", -1),
            ("warmup_epochs", -1),
            ("teacher_mode", "offline"),
            ("dataset", "shapenet56"),
            ("eval.dataset", "modelnet41"),
            ("eval.t", 1000),
            ("eval.t", -1),
            ("eval.num_paths", 0),
            ("eval.ratio", -1),
            ("eval.ratio", 1e39),  # finite in float64, not in float32
            ("seed", -1),
            ("seed", 2**63),
            ("eval.seed", 2**31),
            ("total_steps", 2**40),
            ("eval.point_all", 10),
            ("eval.npoints", 0),
            ("eval.batch_size", 0),
            ("model.width", 0),
            ("model.delta", 0),
            ("model.delta", 5000),
            ("model.noise_scale", -1),
            ("model.mask_ratio", 1.0),
            ("model.drop_path", 1.0),
            ("model.feature_input", "zeros"),
            ("model.target_frame", "x"),
            ("model.dtype", "float16"),
            ("model.alpha", -1),
            ("model.depth", 0),
            ("model.group_size", 0),
            ("image_pipeline", "imagenet"),
            ("allow_changes", "model.width"),
            ("init_from", "{tmp}/nowhere"),
            ("log_every", 0),
            ("checkpoint_every", 0),
            ("keep_checkpoints", 0),
            ("worker_count", -1),
            ("tiny_teacher.steps", 0),
            ("tiny_teacher.image_size", 0),
        ]
    ],
    (PRETRAIN, ["--config.model.num_heads=5"], "config.model.width"),  # 96 is not divisible by 5
    # The launch flags of several processes (README, "Several hosts"), checked before JAX starts.
    (PRETRAIN, ["--num_processes=2"], "--coordinator_address"),
    (
        PRETRAIN,
        ["--coordinator_address=localhost", "--num_processes=2", "--process_id=0"],
        "--coordinator_address",
    ),
    (
        ZEROSHOT,
        ["--coordinator_address=localhost:1234", "--num_processes=0", "--process_id=0"],
        "--num_processes",
    ),
    (
        ATTACK,
        ["--coordinator_address=localhost:1234", "--num_processes=2", "--process_id=2"],
        "--process_id",
    ),
    (PRETRAIN, ["--config.teacher_mode=cached"], "config.teacher_cache"),
    (PRETRAIN, ["--config.tiny_teacher.enabled=False", "--config.teacher="], "config.teacher"),
    (["--config=configs/pretrain.py:smoke"], [], "--workdir"),
    *[
        (ZEROSHOT, [f"--config.{k}={v}"], f"config.{k}")
        for k, v in [
            ("num_paths", 0),
            ("num_paths", -8),
            ("t", -1),
            ("t", 1000),
            ("batch_size", 0),
            ("ratio", -1),
            ("ratio", "nan"),
            ("ratios", "abc"),
            ("ratios", "0.1,-1"),
            ("ratios", "nan"),
            ("npoints", 0),
            ("npoints", 8),
            ("point_all", 10),
            ("template", "clip"),
            ("scan_spelling", "toilett"),
            ("dataset", "modelnet41"),
            ("num_groups", -1),
            ("num_groups", 100000),
            ("group_size", 100000),
            ("checkpoint", "{tmp}/nowhere"),
            ("checkpoint", "{tmp}"),
            ("checkpoint", ""),
            ("seed", "1.5"),
            ("text_features", "{tmp}/missing.npy"),
            ("text_features", "{tmp}/cloud.xyz"),
        ]
    ],
    (["--config=configs/zeroshot.py:modelnet40", "--config.checkpoint={run}"], [], "--workdir"),
    *[
        (ATTACK, [f"--config.{k}={v}"], f"config.{k}")
        for k, v in [
            ("settings", "8-100"),
            ("settings", "0:100"),
            ("settings", "1:1000"),
            ("settings", "1:-1"),
            ("attacks", "pgd,fgsm"),
            ("modes", "adaptive"),
            ("eps", "0.01,x"),
            ("eps", "-0.1"),
            ("eps", ""),
            ("eps", "nan"),
            ("steps", 0),
            ("curve_every", 3),
            ("success_draws", -1),
            ("eot_samples", 0),
            ("seeds", 0),
            ("batch_size", 0),
            ("max_shapes", -1),
            ("draws_per_step", -1),
            ("cw.learning_rate", 0),
            ("cw.initial_lambda", 100),
            ("cw.iterations", 0),
            ("cw.search_steps", 0),
            ("cw.lower", -1),
            ("sweep_eps", -1),
            ("sweep_steps", 0),
            ("ratio", -0.5),
            ("checkpoint", "{tmp}/nowhere"),
        ]
    ],
    (ATTACK, ["--config.sweep_num_paths=0"], "config.sweep_num_paths/sweep_t"),
    (ATTACK, ["--config.sweep_t=1000"], "config.sweep_num_paths/sweep_t"),
    (["--config=configs/attack.py:modelnet40", "--config.checkpoint={run}"], [], "--workdir"),
    *[
        (CLASSIFY, [f"--config.{k}={v}"], f"config.{k}")
        for k, v in [
            ("labels", ""),
            ("labels", " , ,"),
            ("labels", "chair,table,chair"),
            ("input", ""),
            ("input", "{tmp}/missing.xyz"),
            ("input", "{tmp}"),
            ("ratio", -1),
            ("num_paths", 0),
            ("t", 1000),
            ("t", -5),
            ("npoints", 0),
            ("point_all", 10),
            ("mesh_points", 0),
            ("template", "x"),
            ("checkpoint", "{tmp}/nowhere"),
            ("checkpoint", ""),
            ("text_features", "{tmp}/missing.npy"),
        ]
    ],
    *[
        (CONVERT, [f"--config.{k}={v}"], f"config.{k}")
        for k, v in [
            ("model", "pointnet"),
            ("source", "{tmp}/nowhere.pth"),
            ("source", ""),
            ("num_heads", 0),
            ("num_groups", -1),
        ]
    ],
    (CONVERT, [], "cloud.xyz"),  # not a checkpoint type
    *[
        (CERTIFY, [f"--config.{k}={v}"], f"config.{k}")
        for k, v in [
            ("t_values", "0"),
            ("t_values", "300,x"),
            ("n", 0),
            ("n0", 0),
            ("alpha", 0),
            ("alpha", 0.7),
        ]
    ],
    (["--config=configs/certify.py:modelnet40", "--config.checkpoint={run}"], [], "--workdir"),
    (["--config=configs/convert.py", "--config.source={tmp}/cloud.xyz"], [], "--workdir"),
    *[
        (CACHE, [f"--config.{k}={v}"], f"config.{k}")
        for k, v in [
            ("dataset", "modelnet41"),
            ("views", 0),
            ("batch_size", 0),
            ("image_pipeline", "x"),
            ("teacher", ""),
        ]
    ],
    (["--config=configs/teacher_cache.py:smoke"], [], "--workdir"),
    *[
        (DEMO, [f"--config.{k}={v}"], f"config.{k}")
        for k, v in [
            ("batch_size", 0),
            ("num_groups", 1000),
            ("group_size", 0),
            ("interpret_batch_size", 99),
            ("repeats", 0),
            ("data_dir", "{tmp}/nowhere"),
        ]
    ],
    (["--config=configs/prepare.py:modelnet41"], [], "config.dataset"),
    (["--config=configs/prepare.py:modelnet40"], [], "config.manual_dir"),
    (
        ["--config=configs/prepare.py:modelnet40", "--config.manual_dir={tmp}/nowhere"],
        [],
        "config.manual_dir",
    ),
    (["--config=configs/prepare.py:scanobjectnn/obj_only"], [], "config.manual_dir"),
    # flags and config files (exit status 2)
    (["--config=configs/pretrain.py:smoke"], ["--config.nonexistent=1"], "config.nonexistent"),
    (["--config=configs/pretrain.py:smoke"], ["--config.model.widht=64"], "config.model.widht"),
    (["--config=configs/attack.py:smoke"], ["--config.sucess_draws=2"], "config.sucess_draws"),
    (["--config=configs/pretrain.py:smoke,s=abc"], [], "--config=configs/pretrain.py:smoke,s=abc"),
    (
        ["--config=configs/pretrain.py:smoke,cached=maybe"],
        [],
        "--config=configs/pretrain.py:smoke,cached=maybe",
    ),
    (
        ["--config=configs/pretrain.py:smoke,depth=3"],
        [],
        "--config=configs/pretrain.py:smoke,depth=3",
    ),
    (
        ["--config=configs/pretrain.py:smoke,delta=0"],
        [],
        "--config=configs/pretrain.py:smoke,delta=0",
    ),
    (["--config=configs/pretrain.py:smoke"], ["--config.lr=abc"], "config.lr"),
    (["--config=configs/attack.py:smoke"], ["--config.steps=ten"], "config.steps"),
    (["--config=configs/nothere.py"], [], "--config=configs/nothere.py"),
    (["--config=configs/zeroshot.py:modelnet41"], [], "--config=configs/zeroshot.py:modelnet41"),
    (["--config=configs/attack.py:modelnet10"], [], "--config=configs/attack.py:modelnet10"),
    ([], [], "--config"),
    (["--config=configs/kernels_demo.py:smoke", "stray"], [], "stray"),
]


@pytest.mark.parametrize(
    "base, overrides, where", CONFIG_CASES, ids=[" ".join(o or b[:1]) for b, o, _ in CONFIG_CASES]
)
def test_config_values(capsys, tmp_path, fuzz_run, base, overrides, where):
    (tmp_path / "cloud.xyz").write_text("".join(f"{x} {y} {z}\n" for x, y, z in CLOUD))
    argv = [a.format(run=fuzz_run, tmp=tmp_path) for a in [*base, *overrides]]
    if "--workdir" not in where:
        argv.append(f"--workdir={tmp_path / 'out'}")
    run_refused(capsys, argv, where, fuzz_run)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_a_bad_file_sorted_last_is_refused_before_any_file_is_read(
    capsys, tmp_path, fuzz_run, monkeypatch
):
    """1,500 files with a damaged one sorted last (once about 9 minutes of reading first):
    refused by the header check, the line names the file and its place, and no file was read."""
    from ddjax.data import readers

    folder = tmp_path / "clouds"
    folder.mkdir()
    text = "".join(f"{x} {y} {z}\n" for x, y, z in CLOUD)
    for i in range(1499):
        (folder / f"c{i:04d}.xyz").write_text(text)
    with open(folder / "zz_sparse.xyz", "wb") as f:
        f.truncate(3 << 30)  # 3 GB of NUL bytes, not stored on disk

    def never(*args, **kwargs):
        raise AssertionError("a file was read whole before every header was checked")

    monkeypatch.setattr(readers, "read_points_file", never)
    argv = [
        "--config=configs/classify.py",
        f"--config.checkpoint={fuzz_run}",
        "--config.labels=chair,table",
        f"--config.input={folder}/*.xyz",
    ]
    line = run_refused(capsys, argv, str(folder / "zz_sparse.xyz"), fuzz_run)
    assert "not a text file (a NUL byte at offset 0)" in line and "file 1500 of 1500" in line


def _main_process(argv: list[str]) -> subprocess.CompletedProcess:
    """main.py with `argv` as a real process (CPU, no hub), its output captured."""
    return subprocess.run(
        [sys.executable, "main.py", *argv],
        cwd=pathlib.Path(__file__).resolve().parents[1],
        env=dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.parametrize("job", ["zeroshot", "pretrain", "attack", "certify"])
def test_a_workdir_that_is_a_file_in_a_real_process(tmp_path, fuzz_run, job):
    """`--workdir` naming an existing file once ended these four jobs in a traceback (exit 70).
    Now one line naming the file, exit 1, and the file untouched."""
    (tmp_path / "taken").write_text("mine")
    config = {
        "zeroshot": ["--config=configs/zeroshot.py:smoke"],
        "pretrain": ["--config=configs/pretrain.py:smoke"],
        "attack": ["--config=configs/attack.py:smoke"],
        "certify": ["--config=configs/certify.py:smoke"],
    }[job]
    if job != "pretrain":
        config.append(f"--config.checkpoint={fuzz_run}")
    proc = _main_process([*config, f"--workdir={tmp_path / 'taken'}"])
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr[-3000:]
    match = ERROR_LINE.match(lines[0])
    assert match and match["where"] == str(tmp_path / "taken"), lines[0]
    assert "exists and is not a folder" in lines[0]
    assert (tmp_path / "taken").read_text() == "mine"


def test_stray_and_damaged_checkpoint_folders(tmp_path, fuzz_run, synthetic_tiny, capsys):
    """An empty stray checkpoints/999 blocked the valid checkpoints, and orbax's own error
    line leaked for a damaged _CHECKPOINT_METADATA. Evaluation (a real process) skips the stray,
    naming it, uses the latest real step and prints no orbax line; pretraining removes an empty
    stray and refuses one with files in it, before any work."""
    from ddjax import checkpoints, errors
    from ddjax.jobs import pretrain
    from tests.test_train import data_root, tiny_run_config

    run = tmp_path / "run"
    shutil.copytree(fuzz_run, run)
    step = max(int(p.name) for p in (run / "checkpoints").iterdir() if p.name.isdigit())
    (run / "checkpoints" / "999").mkdir()
    (run / "checkpoints" / str(step) / "_CHECKPOINT_METADATA").write_text("{garbage")
    proc = _main_process(
        [
            "--config=configs/zeroshot.py:smoke",
            f"--config.checkpoint={run}",
            f"--workdir={tmp_path / 'zs'}",
        ]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    noise = [ln for ln in proc.stderr.splitlines() if "batch" not in ln and "first step" not in ln]
    assert noise == [
        f"note: {run / 'checkpoints' / '999'} holds no checkpoint (no state folder); it is skipped"
    ], proc.stderr[-3000:]
    assert json.loads((tmp_path / "zs" / "zeroshot.json").read_text())["checkpoint_step"] == step

    # the teacher the run was made with (run_dir's copy of teacher_dir)
    teacher = json.loads((run / "config.json").read_text())["teacher"]
    config = tiny_run_config(data_root(synthetic_tiny), teacher, total_steps=step)
    (run / "checkpoints" / "998").mkdir()
    (run / "checkpoints" / "998" / "notes.txt").write_text("mine")
    with pytest.raises(errors.CheckpointError, match="998.*with files in it"):
        pretrain.run(config, str(run))
    assert (run / "checkpoints" / "998" / "notes.txt").read_text() == "mine"
    shutil.rmtree(run / "checkpoints" / "998")
    capsys.readouterr()
    pretrain.run(config, str(run))
    out = capsys.readouterr()
    assert f"removed {run / 'checkpoints' / '999'}" in out.err
    assert f"run already finished at step {step}" in out.out
    assert checkpoints.stray_steps(run / "checkpoints") == []


# ---------------------------------------------------------------------------- peer checkpoints
def _safetensors(header: bytes, body: bytes = b"", length: int | None = None) -> bytes:
    return (len(header) if length is None else length).to_bytes(8, "little") + header + body


_TENSOR = b'{"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}'
# name -> (bytes, a part of the one line); each names the file (.safetensors once gave tracebacks)
CHECKPOINT_FILES = {
    "short.safetensors": (b"\x01\x02", "too short for a .safetensors file"),
    "oversized.safetensors": (_safetensors(b"{}", length=2**62), "its header claims"),
    "beyond.safetensors": (_safetensors(b"{}", length=4096), "its header claims 4096 bytes"),
    "notjson.safetensors": (_safetensors(b"{not json"), "its header is not JSON"),
    "binary.safetensors": (_safetensors(b"\xff\xfe\x00"), "its header is not JSON"),
    "list.safetensors": (_safetensors(b"[1, 2]"), "a JSON list, not an object"),
    "offsets.safetensors": (_safetensors(_TENSOR, b"\0" * 8), "unreadable .safetensors file"),
    "dtype.safetensors": (
        _safetensors(_TENSOR.replace(b"F32", b"Q99"), b"\0" * 64),
        "unreadable .safetensors file",
    ),
    "empty.npz": (b"", "unreadable .npz file"),
    "text.pth": (b"not a zip", "not a PyTorch zip checkpoint"),
}


@pytest.mark.parametrize("name", sorted(CHECKPOINT_FILES))
def test_checkpoint_files(capsys, tmp_path, name):
    content, message = CHECKPOINT_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    argv = ["--config=configs/convert.py", f"--config.source={path}", "--config.model=recon"]
    line = run_refused(capsys, [*argv, f"--workdir={tmp_path / 'out'}"], str(path))
    assert message in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.reference_data
def test_a_non_finite_parameter_is_refused_by_the_converter(capsys, tmp_path):
    """A parameter that is all NaN, one with an inf and one beyond float32 (once converted
    and written as a run folder): one line listing them, in .npz and in .safetensors alike."""
    from safetensors.numpy import save_file

    reference = reference_path("peers", "ulip_pointbert_seedA.npz")
    with np.load(reference, allow_pickle=False) as z:
        state = {k[len("param/") :]: z[k] for k in z.files if k.startswith("param/")}
    bad = {
        "point_encoder.norm.bias": np.nan,
        "point_encoder.reduce_dim.bias": np.inf,
        "point_encoder.cls_token": 1e300,  # finite in float64, inf in float32
    }
    for key, value in bad.items():
        state[key] = np.full(state[key].shape, value, np.float64 if value == 1e300 else np.float32)
    np.savez(tmp_path / "nan.npz", **state)
    save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, tmp_path / "nan.safetensors")
    for source in ("nan.npz", "nan.safetensors"):
        argv = [
            "--config=configs/convert.py",
            f"--config.source={tmp_path / source}",
            "--config.model=ulip_pointbert",
            f"--workdir={tmp_path / 'out'}",
        ]
        line = run_refused(capsys, argv, "state dict")
        assert "3 not finite" in line and all(k in line for k in bad), line
        assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------------- run folders,
# checkpoints
def test_run_folder_cases(capsys, tmp_path, fuzz_run):
    """A different config into an existing run, a damaged record, a corrupt checkpoint, a checkpoint
    of another model size, no checkpoint: each one line naming the folder or file, the folder
    unchanged."""
    cases = 0

    def copy(name):
        target = tmp_path / name
        shutil.copytree(fuzz_run, target)
        return target

    run = copy("changed")
    recorded = json.loads((run / "config.json").read_text())
    data = f"--config.data_dir={recorded['data_dir']}"
    for override in (
        "--config.model.width=64",
        "--config.lr=0.5",
        "--config.batch_size=16",
        "--config.total_steps=9",
        "--config.model.noise_scale=0",
    ):
        line = run_refused(
            capsys,
            [
                "--config=configs/pretrain.py:smoke",
                data,
                "--config.dataset=synthetic_shapes/tiny",
                override,
                f"--workdir={run}",
            ],
            str(run),
            run,
        )
        assert "nothing was written" in line
        cases += 1
    (run / "config.json").write_text("{not json")
    run_refused(
        capsys, ["--config=configs/pretrain.py:smoke", f"--workdir={run}"], "config.json", run
    )
    cases += 1

    zeroshot = ["--config=configs/zeroshot.py:modelnet40", f"--workdir={tmp_path / 'zs'}"]
    broken = copy("corrupt")
    step = max(int(p.name) for p in (broken / "checkpoints").iterdir() if p.name.isdigit())
    for path in (broken / "checkpoints" / str(step)).rglob("*"):
        if path.is_file() and path.stat().st_size > 64:
            path.write_bytes(b"\0" * path.stat().st_size)
    line = run_refused(
        capsys, [*zeroshot, f"--config.checkpoint={broken}"], f"checkpoints/{step}", broken
    )
    assert "damaged or not an orbax checkpoint" in line
    cases += 1

    other = copy("other_size")
    record = json.loads((other / "config.json").read_text())
    record["model"]["width"] *= 2
    (other / "config.json").write_text(json.dumps(record))
    line = run_refused(
        capsys, [*zeroshot, f"--config.checkpoint={other}"], f"checkpoints/{step}", other
    )
    assert (
        "holds a different model than the run's config.json describes" in line and "shape" in line
    )
    cases += 1

    empty = copy("no_checkpoint")
    shutil.rmtree(empty / "checkpoints")
    (empty / "checkpoints").mkdir()
    run_refused(capsys, [*zeroshot, f"--config.checkpoint={empty}"], "checkpoints", empty)
    cases += 1

    damaged = copy("damaged_record")
    (damaged / "config.json").write_text('{"model": 3}')
    run_refused(capsys, [*zeroshot, f"--config.checkpoint={damaged}"], "config.json", damaged)
    cases += 1
    assert cases == RUN_FOLDER_CASES


RUN_FOLDER_CASES = 10


# ------------------------------------------------------------------------------------ dataset
# preparation
def _modelnet(root: pathlib.Path) -> pathlib.Path:
    rng = np.random.default_rng(0)
    (root / "chair").mkdir(parents=True)
    names = ["chair"] + [f"c{i}" for i in range(39)]
    (root / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    (root / "modelnet40_train.txt").write_text("chair_0001\n")
    (root / "modelnet40_test.txt").write_text("chair_0002\n")
    for shape in ("chair_0001", "chair_0002"):
        data = np.concatenate([rng.normal(size=(8200, 3)), np.tile([0, 0, 1.0], (8200, 1))], axis=1)
        np.savetxt(root / "chair" / f"{shape}.txt", data, delimiter=",", fmt="%.5f")
    return root


def _append(path, text):
    with open(path, "a") as f:
        f.write(text)


MODELNET_CASES = {  # name -> (how to break the folder, the <where> expected)
    "names_missing": (
        lambda r: (r / "modelnet40_shape_names.txt").unlink(),
        "modelnet40_shape_names.txt",
    ),
    "names_count": (
        lambda r: (r / "modelnet40_shape_names.txt").write_text("chair\ntable\n"),
        "modelnet40_shape_names.txt",
    ),
    "names_binary": (
        lambda r: (r / "modelnet40_shape_names.txt").write_bytes(b"\xff\xfe\x00"),
        "modelnet40_shape_names.txt",
    ),
    "split_missing": (lambda r: (r / "modelnet40_test.txt").unlink(), "modelnet40_test.txt"),
    "split_empty": (
        lambda r: (r / "modelnet40_test.txt").write_text("\n\n"),
        "modelnet40_test.txt",
    ),
    "split_class": (
        lambda r: (r / "modelnet40_test.txt").write_text("\nsofa_0001\n"),
        "modelnet40_test.txt:2",
    ),
    "split_repeat": (
        lambda r: (r / "modelnet40_test.txt").write_text("chair_0002\nchair_0002\n"),
        "modelnet40_test.txt:2",
    ),
    "shape_missing": (lambda r: (r / "chair" / "chair_0002.txt").unlink(), "chair_0002.txt"),
    "shape_ragged": (
        lambda r: _append(r / "chair" / "chair_0002.txt", "1,2,3\n"),
        "chair_0002.txt:8201",
    ),
    "shape_word": (
        lambda r: _append(r / "chair" / "chair_0002.txt", "1,2,x,0,0,1\n"),
        "chair_0002.txt:8201",
    ),
    "shape_nan": (
        lambda r: _append(r / "chair" / "chair_0002.txt", "nan,2,3,0,0,1\n"),
        "chair_0002.txt:8201",
    ),
    "shape_few": (
        lambda r: np.savetxt(r / "chair" / "chair_0002.txt", np.ones((100, 6)), delimiter=","),
        "chair_0002.txt",
    ),
    "shape_empty": (lambda r: (r / "chair" / "chair_0002.txt").write_text(""), "chair_0002.txt"),
}


@pytest.mark.parametrize("name", sorted(MODELNET_CASES))
def test_modelnet_preparation(capsys, tmp_path, name):
    root = _modelnet(tmp_path / "modelnet40_normal_resampled")
    breaks, where = MODELNET_CASES[name]
    breaks(root)
    run_refused(
        capsys,
        [
            "--config=configs/prepare.py:modelnet40",
            f"--config.manual_dir={root}",
            f"--config.data_dir={tmp_path / 'tfds'}",
        ],
        where,
    )
    # a failed build leaves nothing behind
    assert not list((tmp_path / "tfds").rglob("incomplete.*"))


def _h5(path, data=None, label=None, **extra):
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        if data is not None and not isinstance(data, str):
            f["data"] = data
        if label is not None:
            f["label"] = label
        for key, value in extra.items():
            f[key] = value
        if isinstance(data, str):
            f.create_group(data)


GOOD_DATA = np.random.default_rng(1).normal(size=(2, 2048, 3)).astype(np.float32)
SCANOBJECTNN_CASES = {  # name -> (write the test file, the <where> expected)
    "not_h5": (lambda p: p.write_text("not hdf5"), "test_objectdataset.h5"),
    "no_label": (lambda p: _h5(p, GOOD_DATA), "test_objectdataset.h5"),
    "no_data": (lambda p: _h5(p, label=np.zeros(2)), "test_objectdataset.h5"),
    "shape": (lambda p: _h5(p, GOOD_DATA[:, :1024], np.zeros(2)), "test_objectdataset.h5"),
    "label_range": (lambda p: _h5(p, GOOD_DATA, np.array([0, 15])), "test_objectdataset.h5"),
    "label_count": (lambda p: _h5(p, GOOD_DATA, np.zeros(3)), "test_objectdataset.h5"),
    "nan": (
        lambda p: _h5(
            p, np.where(np.arange(2)[:, None, None] == 1, np.nan, GOOD_DATA), np.zeros(2)
        ),
        "test_objectdataset.h5",
    ),
    "strings": (
        lambda p: _h5(p, np.full((2, 2048, 3), b"a"), np.zeros(2)),
        "test_objectdataset.h5",
    ),
    "empty": (
        lambda p: _h5(p, np.zeros((0, 2048, 3), np.float32), np.zeros(0)),
        "test_objectdataset.h5",
    ),
    "group": (lambda p: _h5(p, "data", np.zeros(2)), "test_objectdataset.h5"),
}


@pytest.mark.parametrize("name", sorted(SCANOBJECTNN_CASES))
def test_scanobjectnn_preparation(capsys, tmp_path, name):
    from ddjax.data import builders

    root = tmp_path / "h5_files"
    train, test = builders.SCANOBJECTNN_FILES["obj_only"]
    _h5(root / train, GOOD_DATA, np.zeros(2))
    write, where = SCANOBJECTNN_CASES[name]
    (root / test).parent.mkdir(parents=True, exist_ok=True)
    write(root / test)
    run_refused(
        capsys,
        [
            "--config=configs/prepare.py:scanobjectnn/obj_only",
            f"--config.manual_dir={root}",
            f"--config.data_dir={tmp_path / 'tfds'}",
        ],
        where,
    )


def _shapenet(root: pathlib.Path) -> pathlib.Path:
    from PIL import Image

    (root / "ShapeNet-55").mkdir(parents=True)
    (root / "shapenet_pc").mkdir()
    (root / "shapenet_img").mkdir()
    table = {
        "catalogue": {str(i): 2691156 + i for i in range(55)},
        "describe": {str(i): f"c{i}" for i in range(55)},
    }
    (root / "shapenet55.json").write_text(json.dumps(table))
    for split, stem in (("train", "02691156-aaa"), ("test", "02691156-bbb")):
        (root / "ShapeNet-55" / f"{split}.txt").write_text(f"{stem}.npy\n")
        np.save(
            root / "shapenet_pc" / f"{stem}.npy", np.random.default_rng(2).normal(size=(8192, 3))
        )
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "shapenet_img" / f"{stem}.png")
    return root


SHAPENET_CASES = {
    "json_invalid": (lambda r: (r / "shapenet55.json").write_text("{"), "shapenet55.json"),
    "json_columns": (lambda r: (r / "shapenet55.json").write_text('{"a": {}}'), "shapenet55.json"),
    "json_count": (
        lambda r: (r / "shapenet55.json").write_text('[{"catalogue": 1, "describe": "x"}]'),
        "shapenet55.json",
    ),
    "json_type": (lambda r: (r / "shapenet55.json").write_text('"a table"'), "shapenet55.json"),
    "list_synset": (
        lambda r: (r / "ShapeNet-55" / "test.txt").write_text("\n09999999-ccc.npy\n"),
        "test.txt:2",
    ),
    "list_repeat": (
        lambda r: (r / "ShapeNet-55" / "test.txt").write_text("02691156-bbb.npy\n02691156-bbb\n"),
        "test.txt:2",
    ),
    "npy_missing": (
        lambda r: (r / "shapenet_pc" / "02691156-bbb.npy").unlink(),
        "02691156-bbb.npy",
    ),
    "npy_shape": (
        lambda r: np.save(r / "shapenet_pc" / "02691156-bbb.npy", np.ones((100, 3))),
        "02691156-bbb.npy",
    ),
    "npy_pickled": (
        lambda r: np.save(
            r / "shapenet_pc" / "02691156-bbb.npy", np.array([{}]), allow_pickle=True
        ),
        "02691156-bbb.npy",
    ),
    "npy_nan": (
        lambda r: np.save(r / "shapenet_pc" / "02691156-bbb.npy", np.full((8192, 3), np.nan)),
        "02691156-bbb.npy",
    ),
    "npy_truncated": (
        lambda r: (r / "shapenet_pc" / "02691156-bbb.npy").write_bytes(
            (r / "shapenet_pc" / "02691156-bbb.npy").read_bytes()[:1000]
        ),
        "02691156-bbb.npy",
    ),
    "png_missing": (
        lambda r: (r / "shapenet_img" / "02691156-bbb.png").unlink(),
        "02691156-bbb.png",
    ),
    "png_garbage": (
        lambda r: (r / "shapenet_img" / "02691156-bbb.png").write_bytes(b"\x89PNG garbage"),
        "02691156-bbb.png",
    ),
}


@pytest.mark.parametrize("name", sorted(SHAPENET_CASES))
def test_shapenet_preparation(capsys, tmp_path, name):
    root = _shapenet(tmp_path / "ShapeNet55")
    breaks, where = SHAPENET_CASES[name]
    breaks(root)
    run_refused(
        capsys,
        [
            "--config=configs/prepare.py:shapenet55",
            f"--config.manual_dir={root}",
            f"--config.data_dir={tmp_path / 'tfds'}",
        ],
        where,
    )


def _classes(root: pathlib.Path) -> pathlib.Path:
    """A folder of your own categories: a/ and b/, two point clouds of 300 points each."""
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(2):
            np.save(root / c / f"{c}{i}.npy", rng.normal(size=(300, 3)).astype(np.float32))
    return root


def _move_into(root: pathlib.Path, split: str) -> None:
    (root / split).mkdir()
    for c in ("a", "b"):
        (root / c).rename(root / split / c)


FOLDER_CASES = {  # name -> (how to break the folder, the <where> expected, extra flags)
    "one_class": (lambda r: shutil.rmtree(r / "b"), "classes", ()),
    "splits_beside_classes": (lambda r: (r / "test").mkdir(), "classes", ()),
    "train_without_test": (lambda r: _move_into(r, "train"), "classes", ()),
    "classes_unlisted": (lambda r: (r / "classes.txt").write_text("a\n"), "classes.txt", ()),
    "classes_repeat": (
        lambda r: (r / "classes.txt").write_text("a\nb\na: x\n"),
        "classes.txt:3",
        (),
    ),
    "classes_no_folder": (lambda r: (r / "classes.txt").write_text(": x\n"), "classes.txt:1", ()),
    "classes_missing": (lambda r: (r / "classes.txt").write_text("a\nb\nc\n"), "classes.txt", ()),
    "classes_binary": (
        lambda r: (r / "classes.txt").write_bytes(b"\xff\xfe\x00"),
        "classes.txt",
        (),
    ),
    "stray_file": (lambda r: np.save(r / "c0.npy", np.ones((300, 3))), "c0.npy", ()),
    "class_without_files": (
        lambda r: [p.unlink() for p in (r / "b").glob("*.npy")],
        "classes/b",
        (),
    ),
    "cloud_few": (lambda r: np.save(r / "b" / "b1.npy", np.eye(100, 3)), "b1.npy", ()),
    "cloud_nan": (lambda r: np.save(r / "b" / "b1.npy", np.full((300, 3), np.nan)), "b1.npy", ()),
    "glb_garbage": (lambda r: (r / "b" / "z.glb").write_bytes(b"glTF garbage"), "z.glb", ()),
    "stl_truncated": (
        lambda r: (r / "b" / "z.stl").write_bytes(bytes(80) + struct.pack("<I", 5) + bytes(50)),
        "z.stl",
        (),
    ),
    "manual_missing": (lambda r: shutil.rmtree(r), "config.manual_dir", ()),
    "name": (lambda r: None, "config.name", ("--config.name=../up",)),
    "points": (lambda r: None, "config.points", ("--config.points=0",)),
}


@pytest.mark.parametrize("name", sorted(FOLDER_CASES))
def test_folder_preparation(capsys, tmp_path, name):
    root = _classes(tmp_path / "classes")
    breaks, where, flags = FOLDER_CASES[name]
    breaks(root)
    run_refused(
        capsys,
        [
            "--config=configs/prepare.py:folder",
            f"--config.manual_dir={root}",
            f"--config.data_dir={tmp_path / 'tfds'}",
            "--config.points=256",
            *flags,
        ],
        where,
    )
    assert not list((tmp_path / "tfds").rglob("incomplete.*"))


def test_changed_manual_folder_is_refused(capsys, tmp_path):
    """Preparing again from a folder holding different files refuses, naming the build, and changes
    nothing."""
    root = _modelnet(tmp_path / "modelnet40_normal_resampled")
    argv = [
        "--config=configs/prepare.py:modelnet40",
        f"--config.manual_dir={root}",
        f"--config.data_dir={tmp_path / 'tfds'}",
    ]
    assert main.run_command(argv) == 0
    (root / "modelnet40_test.txt").write_text("chair_0001\nchair_0002\n")
    line = run_refused(capsys, argv, "modelnet40/1.0.0", tmp_path / "tfds")
    assert "--config.rebuild=True" in line


def test_a_bug_shows_its_traceback_and_says_so(capsys, monkeypatch):
    """Anything but a user error is a bug in ddjax: exit 70, the traceback, then one
    line saying so."""

    class BrokenJob:  # a job module whose run fails with a KeyError
        @staticmethod
        def run(config, workdir):
            return {}["missing"]

    monkeypatch.setitem(main.JOBS, "kernels_demo", BrokenJob)
    capsys.readouterr()
    assert main.run_command(["--config=configs/kernels_demo.py:smoke"]) == main.EXIT_BUG
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "Traceback (most recent call last):" and "KeyError: 'missing'" in err[-2]
    assert (
        err[-1].startswith("error: this is a bug in ddjax (KeyError at ")
        and "test_bad_inputs.py:" in err[-1]
    )
    assert err[-1].endswith(
        "please report it on ddjax's issue tracker with the command and the traceback above"
    )


CASES = (
    len(POINT_FILES)
    + len(CONFIG_CASES)
    + len(CHECKPOINT_FILES)
    + 3
    + 4  # a workdir that is a file, for four jobs
    + RUN_FOLDER_CASES
    + len(MODELNET_CASES)
    + len(SCANOBJECTNN_CASES)
    + len(SHAPENET_CASES)
    + len(FOLDER_CASES)
    + 1
)


def test_case_count():
    """docs/reliability.md counts the cases of this file."""
    readme = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "reliability.md").read_text()
    assert CASES >= 150 and f"{CASES} cases" in readme, CASES
