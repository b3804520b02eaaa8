"""main.py end to end: the demo job through absl flags and the config file, as a user runs it."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

from configs import common

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_demo_job_runs_and_reports(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/kernels_demo.py:smoke",
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "kernels_demo.json").read_text())
    assert summary["num_groups"] == 16 and summary["group_size"] == 8
    assert set(summary["implementations"]) >= {"xla", "pallas_interpret"}
    assert all(r["equals_xla"] for r in summary["implementations"].values())
    assert "equals xla: True" in proc.stdout
    first = proc.stdout.splitlines()[0]  # every job starts with the backend line
    assert (
        first.startswith("jax ")
        and "backend cpu: 1 x cpu (1 process); kernels fps=xla, knn=xla" in first
    )


def test_a_cache_folder_that_cannot_be_made_turns_the_cache_off_in_one_line(tmp_path):
    # The compilation cache never stops a job: a --compilation_cache_dir under a file is one note on
    # stderr.
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/kernels_demo.py:smoke",
            f"--workdir={tmp_path / 'w'}",
            f"--compilation_cache_dir={blocker / 'cache'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.strip() == (
        f"note: compilation cache off ({blocker / 'cache'} cannot be created or written); "
        "pass --compilation_cache_dir=DIR or --nocompilation_cache"
    )
    assert (tmp_path / "w" / "kernels_demo.json").is_file()


def test_unknown_job_is_a_usage_error(tmp_path):
    proc = subprocess.run(
        [sys.executable, "main.py", "--config=configs/kernels_demo.py:smoke", "--config.job=nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: bad command line (config.job): 'nope' is not a job; use one of "
        "['attack', 'certify', 'classify', 'convert', 'export', 'kernels_demo', 'prepare', "
        "'pretrain', 'teacher_cache', 'visualize', 'zeroshot']"
    )


def test_parse_arg():
    arg = common.parse_arg("smoke,seed=3", smoke=False, seed=0, name="x")
    assert arg.smoke is True and arg.seed == 3 and arg.name == "x"
    with pytest.raises(ValueError, match=r"unknown config argument 'sede'"):
        common.parse_arg("sede=3", seed=0)
    with pytest.raises(ValueError, match=r"needs a value"):
        common.parse_arg("seed", seed=0)


def test_prepare_job(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/prepare.py:synthetic_shapes/tiny",
            f"--config.data_dir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "prepared synthetic_shapes/tiny in" in proc.stdout and "train 48" in proc.stdout
    assert (
        proc.stdout.startswith("jax ") and "kernels fps=xla, knn=xla" in proc.stdout.splitlines()[0]
    )
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/prepare.py:modelnet40",
            f"--config.data_dir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and (
        "error: bad config value (config.manual_dir): dataset 'modelnet40' is built "
        "from your downloaded files" in proc.stderr
    )
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("verbosity", [[], ["--verbosity=0"]])
def test_a_checkpoint_reading_job_is_quiet(run_dir, synthetic_tiny, tmp_path, verbosity):
    """At the default verbosity a zero-shot job's stderr is empty (no orbax/absl INFO lines, no
    transformers notice); absl's --verbosity brings the INFO lines back."""
    from tests.test_train import data_root

    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/zeroshot.py:smoke",
            *verbosity,
            f"--config.checkpoint={run_dir}",
            "--config.dataset=synthetic_shapes/tiny",
            f"--config.data_dir={data_root(synthetic_tiny)}",
            f"--workdir={tmp_path}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1].startswith("zero-shot smoke: top-1")
    if verbosity:
        # orbax's INFO lines
        assert "checkpoint" in proc.stderr and proc.stderr.lstrip().startswith("I")
    else:
        assert proc.stderr == ""
