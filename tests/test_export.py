"""The exported classifier (configs/export.py, ddjax/exported_classifier.py): written for cpu, cuda
and tpu, run by docs/zeroshot.md's loader in a Python that cannot import ddjax, equal to the
classify job within float32 rounding, read by classify, and refused where it would replace
something else."""

import json
import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest

import main
from ddjax import exported_classifier

ROOT = pathlib.Path(__file__).resolve().parents[1]
SMALL = [  # the tiny run's sizes: clouds of 300 points, 150 by FPS, 128 kept, 2 paths at t = 100
    "--config.input_points=300",
    "--config.point_all=150",
    "--config.npoints=128",
    "--config.num_paths=2",
    "--config.t=100",
]
LABELS = "sphere,cube,cylinder,cone"


# python -I -c WITHOUT_DDJAX [-c CODE | SCRIPT] ARGS: CODE or SCRIPT runs with the editable
# install's import hooks (setuptools' __editable__ finders, which map ddjax to the checkout) removed
WITHOUT_DDJAX = """
import runpy, sys
editable = lambda h: getattr(h, "__module__", "").startswith("__editable__")
sys.meta_path[:] = [h for h in sys.meta_path if not editable(h)]
sys.path_hooks[:] = [h for h in sys.path_hooks if not editable(h)]
sys.path_importer_cache.clear()
args = sys.argv[1:]
if args[0] == "-c":
    sys.argv = ["-c", *args[2:]]
    exec(args[1])
else:
    sys.argv = args
    runpy.run_path(args[0], run_name="__main__")
"""


def docs_loader() -> str:
    """The loader of docs/zeroshot.md ("An exported classifier"), as written there."""
    text = (ROOT / "docs" / "zeroshot.md").read_text()
    section = text[text.index("## An exported classifier") :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def job_scores(argv, capsys) -> list[dict]:
    capsys.readouterr()
    assert main.run_command(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    return [json.loads(line) for line in lines if line.startswith("{")]


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "classifier"
    argv = [
        "--config=configs/export.py",
        f"--config.checkpoint={run_dir}",
        f"--config.labels={LABELS}",
        *SMALL,
        f"--workdir={out}",
    ]
    assert main.run_command(argv) == 0
    return out, argv


def test_the_folder_holds_the_program_for_every_platform(exported):
    out, _ = exported
    record = json.loads((out / "export.json").read_text())
    assert record["format"] == exported_classifier.FORMAT
    assert record["platforms"] == ["cpu", "cuda", "tpu"] and record["input_points"] == 300
    assert (out / "classes.txt").read_text().split() == LABELS.split(",")
    loaded = exported_classifier.Loaded(out)
    assert loaded.exported.platforms == ("cpu", "cuda", "tpu")
    assert loaded.text_features.shape[0] == 4
    # any batch size: a cloud scores the same alone and among others
    clouds = np.random.default_rng(0).normal(size=(3, 300, 3)).astype(np.float32)
    together = loaded.scores(clouds)
    alone = loaded.scores(clouds[1:2])
    np.testing.assert_array_equal(together[1:2], alone)


def test_the_docs_loader_runs_without_ddjax_and_matches_classify(exported, tmp_path, capsys):
    out, _ = exported
    cloud = np.random.default_rng(1).normal(size=(300, 3)).astype(np.float32)
    cloud[:, 2] *= 0.3  # a flattened blob
    np.save(tmp_path / "cloud.npy", cloud)
    (tmp_path / "loader.py").write_text(docs_loader())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COVERAGE_PROCESS_START")}
    env["JAX_PLATFORMS"] = "cpu"
    # no PYTHONPATH, no user site, and the environment's editable install of ddjax taken out: a
    # Python with jax and numpy that cannot import ddjax
    isolated = [sys.executable, "-I", "-c", WITHOUT_DDJAX]
    probe = subprocess.run(
        [*isolated, "-c", "import ddjax"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert probe.returncode != 0 and "No module named 'ddjax'" in probe.stderr, probe.stderr
    proc = subprocess.run(
        [*isolated, "loader.py", str(out), str(tmp_path / "cloud.npy")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = dict(line.split() for line in proc.stdout.strip().splitlines())
    # the classify job on the same file, the same settings (mesh_points is not used by a cloud)
    (result,) = job_scores(
        [
            "--config=configs/classify.py",
            f"--config.checkpoint={exported[1][1].split('=', 1)[1]}",
            f"--config.labels={LABELS}",
            f"--config.input={tmp_path / 'cloud.npy'}",
            "--config.point_all=150",
            "--config.npoints=128",
            "--config.num_paths=2",
            "--config.t=100",
        ],
        capsys,
    )
    job = {r["label"]: r["score"] for r in result["ranking"]}
    assert sorted(loaded) == sorted(job)
    for label, score in job.items():
        assert abs(float(loaded[label]) - score) < 1e-5, (label, loaded[label], score)
    # and classify reads the exported folder itself: the same scores
    (again,) = job_scores(
        [
            "--config=configs/classify.py",
            f"--config.checkpoint={out}",
            f"--config.input={tmp_path / 'cloud.npy'}",
        ],
        capsys,
    )
    for r in again["ranking"]:
        assert abs(r["score"] - job[r["label"]]) < 1e-5, r


def test_another_export_into_the_folder_is_refused(exported, capsys, tmp_path):
    out, argv = exported
    before = (out / "classifier.jax_exported").read_bytes()
    capsys.readouterr()
    assert main.run_command([*argv[:-1], "--config.t=200", argv[-1]]) == 1
    err = capsys.readouterr().err
    assert "holds an export with other t; nothing was changed" in err
    assert (out / "classifier.jax_exported").read_bytes() == before
    # a cloud of another size, through classify
    np.save(tmp_path / "small.npy", np.random.default_rng(0).normal(size=(100, 3)))
    assert (
        main.run_command(
            [
                "--config=configs/classify.py",
                f"--config.checkpoint={out}",
                f"--config.input={tmp_path / 'small.npy'}",
            ]
        )
        == 1
    )
    assert "the exported classifier takes clouds of exactly 300" in capsys.readouterr().err
