"""Run-folder integrity: the recorded config refuses a command that changes the run, before writing
anything; atomic writes; paths inside the run stored relative to it so that a moved run still works.
"""

import json
import os
import shutil

import numpy as np
import pytest

from ddjax import run_folder


def _record(tmp_path, **changes):
    config = {
        "job": "pretrain",
        "lr": 5e-4,
        "total_steps": 3,
        "epochs": 4,
        "log_every": 1,
        "allow_changes": "",
        "model": {"width": 96, "noise_scale": 0.08},
        "eval": {"dataset": ""},
        "splits": ["train", "test"],
    }
    (tmp_path / "config.json").write_text(
        json.dumps(config | {"resolved": {"teacher": "./teacher"}})
    )
    new = json.loads(json.dumps(config))
    for key, value in changes.items():
        *path, leaf = key.split(".")
        target = new
        for p in path:
            target = target[p]
        target[leaf] = value
    return new


@pytest.mark.parametrize(
    "changes, listed",
    [
        ({"model.width": 64}, "model.width: 96 -> 64"),
        # ':smoke,s=0' into an s = 0.08 run
        ({"model.noise_scale": 0.0}, "model.noise_scale: 0.08 -> 0.0"),
        ({"lr": -1}, "lr: 0.0005 -> -1"),
        ({"splits": ["train"]}, 'splits: ["train", "test"] -> ["train"]'),
        # every key, sorted
        ({"lr": 1e-3, "model.width": 64}, "lr: 0.0005 -> 0.001, model.width: 96 -> 64"),
        ({"total_steps": 6}, "total_steps: 3 -> 6"),
    ],
)
def test_a_different_config_is_refused_in_one_line_before_anything_is_written(
    tmp_path, changes, listed
):
    new = _record(tmp_path, **changes)
    before = (tmp_path / "config.json").read_bytes()
    with pytest.raises(run_folder.RunFolderError) as err:
        run_folder.check_same_run(tmp_path, new)
    message = str(err.value)
    assert "\n" not in message and listed in message and "another --workdir" in message
    assert ("--config.allow_changes=total_steps" in message) == (set(changes) == {"total_steps"})
    assert (tmp_path / "config.json").read_bytes() == before and os.listdir(tmp_path) == [
        "config.json"
    ]


def test_continuing_deliberately_and_free_keys(tmp_path):
    run_folder.check_same_run(tmp_path, _record(tmp_path))  # the same config: fine
    run_folder.check_same_run(
        tmp_path, _record(tmp_path, total_steps=6, allow_changes="total_steps")
    )
    run_folder.check_same_run(
        tmp_path, _record(tmp_path, epochs=8, total_steps=9, allow_changes="epochs,total_steps")
    )
    # do not change what the run means
    for key, value in (("log_every", 50), ("eval.dataset", "modelnet40")):
        run_folder.check_same_run(tmp_path, _record(tmp_path, **{key: value}))
    # only the named key
    with pytest.raises(run_folder.RunFolderError, match=r"lr: 0.0005 -> 0.001"):
        run_folder.check_same_run(
            tmp_path, _record(tmp_path, lr=1e-3, total_steps=6, allow_changes="total_steps")
        )
    with pytest.raises(
        ValueError,
        match=r"allow_changes\): \['model.width'\] cannot change.*\['total_steps', 'epochs'\]",
    ):
        run_folder.check_same_run(tmp_path, _record(tmp_path, allow_changes="model.width"))
    # no record yet: a new run
    run_folder.check_same_run(tmp_path / "new", _record(tmp_path, lr=1.0))


def test_a_damaged_record_is_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"job": "pre')
    with pytest.raises(
        run_folder.RunFolderError, match=r"config.json\): this run folder's record is unreadable"
    ):
        run_folder.check_same_run(tmp_path, {"job": "pretrain"})


def test_atomic_writes_leave_the_old_or_the_new_file(tmp_path):
    path = tmp_path / "table.md"
    run_folder.write_text(path, "old\n")
    run_folder.write_text(path, "new\n")
    assert path.read_text() == "new\n"

    def killed(f):  # a write that dies halfway
        f.write(b"half of the ne")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_folder._atomic(path, killed)
    # no temporary file left
    assert path.read_text() == "new\n" and os.listdir(tmp_path) == ["table.md"]
    run_folder.save_npy(tmp_path / "a.npy", np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(
        np.load(tmp_path / "a.npy", allow_pickle=False), np.arange(6.0).reshape(2, 3)
    )


def test_paths_inside_the_run_are_stored_relative(tmp_path):
    run = tmp_path / "run"
    (run / "teacher").mkdir(parents=True)
    assert run_folder.store_path(run, str(run / "teacher")) == "./teacher"
    assert (
        run_folder.store_path(run, "openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
    )
    outside = tmp_path / "weights"
    assert run_folder.store_path(run, str(outside)) == str(outside)
    moved = tmp_path / "elsewhere"
    shutil.move(run, moved)
    assert run_folder.resolve_path(moved, "./teacher") == str(moved.resolve() / "teacher")
    assert (
        run_folder.resolve_path(moved, "openai/clip-vit-base-patch32")
        == "openai/clip-vit-base-patch32"
    )


def test_a_moved_run_is_evaluated_with_its_own_teacher(run_dir, tmp_path):
    from ddjax import checkpoints

    assert json.loads((run_dir / "config.json").read_text())["resolved"]["teacher"] == "./teacher"
    moved = tmp_path / "moved"
    shutil.copytree(run_dir, moved)
    run_config, _, step = checkpoints.restore_run(str(moved))
    assert run_config["resolved"]["teacher"] == str(moved.resolve() / "teacher") and step == 2


def test_main_refuses_to_retrain_a_run_with_another_width(run_dir, tmp_path):
    """The issue's case: pretraining with another model width into an existing run folder. One line,
    exit 1, and the folder byte for byte as it was (the old run can still be evaluated)."""
    import pathlib
    import subprocess
    import sys

    from tests.conftest import python_path

    root = pathlib.Path(__file__).resolve().parents[1]
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    snapshot = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1", PYTHONPATH=python_path())
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/pretrain.py:smoke",
            f"--workdir={run}",
            "--config.model.width=64",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: ")
        and "model.width: 32 -> 64" in last
        and "another --workdir" in last
    )
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == snapshot
