"""Run-folder integrity: the recorded config refuses a command that changes the run, before writing
anything; atomic writes; paths inside the run stored relative to it so that a moved run still works.
"""

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from ddjax import errors, run_folder
from tests.conftest import env_without_coverage


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


def test_a_record_from_before_a_key_existed_means_its_old_default(tmp_path):
    # model.patch_widths came after runs were recorded: a record without it is a run of the
    # default mini-PointNet, which resumes under that default and refuses another width
    from ddjax.models import tokenizer

    assert run_folder.ADDED["model.patch_widths"] == list(tokenizer.PATCH_WIDTHS)
    run_folder.check_same_run(
        tmp_path, _record(tmp_path, **{"model.patch_widths": [128, 256, 512]})
    )
    with pytest.raises(
        run_folder.RunFolderError, match=r"model.patch_widths: \[128, 256, 512\] -> \[32, 64, 128\]"
    ):
        run_folder.check_same_run(
            tmp_path, _record(tmp_path, **{"model.patch_widths": [32, 64, 128]})
        )
    # a key that is not in ADDED and only one side has still counts
    with pytest.raises(run_folder.RunFolderError, match=r"model.depth: \"\(absent\)\" -> 4"):
        run_folder.check_same_run(tmp_path, _record(tmp_path, **{"model.depth": 4}))


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
        run_folder.atomic_write(path, killed)
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
    # the lock file aside: every writing job records itself there (`run_folder.held`)
    files = lambda: {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
    snapshot = files()
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
    assert files() == snapshot


# One writer per run folder (`run_folder.held`) and operating-system faults as one line.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = """
import sys, time
sys.path.insert(0, {root!r})
from ddjax import run_folder
with run_folder.held({folder!r}):
    print("held", flush=True)
    time.sleep(600)
"""


def _demo(workdir, file_size_limit=None):
    """The cheapest job that writes into its run folder, as a real process (with RLIMIT_FSIZE set
    by the process itself before it becomes main.py: no fork of this JAX process)."""
    command = [
        sys.executable,
        os.path.join(ROOT, "main.py"),
        "--config=configs/kernels_demo.py:smoke",
    ]
    command += [f"--workdir={workdir}", "--nocompilation_cache"]
    if file_size_limit:
        limit = (
            "import os, resource, sys; "
            f"resource.setrlimit(resource.RLIMIT_FSIZE, ({file_size_limit}, {file_size_limit})); "
            "os.execv(sys.executable, [sys.executable] + sys.argv[1:])"
        )
        command = [sys.executable, "-c", limit, *command[1:]]
        env = env_without_coverage()
    else:
        env = None
    return subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)


def test_a_second_writer_is_refused_and_a_killed_holder_blocks_nothing(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD.format(root=ROOT, folder=str(folder))],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        out = _demo(folder)
        assert out.returncode == 1, out.stderr
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: the run folder is in use"), lines
        assert f"process {holder.pid} on " in lines[0] and "started 20" in lines[0]
        assert not (folder / "kernels_demo.json").exists()
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    assert (folder / run_folder.LOCK).exists()  # left behind, and harmless
    out = _demo(folder)
    assert out.returncode == 0, out.stderr
    assert (folder / "kernels_demo.json").exists()


def test_a_failed_job_leaves_no_folder_it_created(tmp_path):
    folder = tmp_path / "a" / "b"
    with pytest.raises(RuntimeError):
        with run_folder.held(folder):
            assert (folder / run_folder.LOCK).exists()
            raise RuntimeError("the job failed")
    assert not (tmp_path / "a").exists()
    with run_folder.held(folder):  # success keeps it; the lock is free again afterwards
        (folder / "result.json").write_text("{}")
    with run_folder.held(folder):
        pass
    assert (folder / "result.json").exists()
    # an existing folder is never removed, even when the job fails
    with pytest.raises(RuntimeError):
        with run_folder.held(folder):
            raise RuntimeError("the job failed")
    assert (folder / "result.json").exists()


def test_a_workdir_that_is_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    for workdir, expected in (
        (tmp_path / "file", "exists and is not a folder"),
        (tmp_path / "file" / "run", "Not a directory [errno 20]"),
    ):
        out = _demo(workdir)
        lines = out.stderr.strip().splitlines()
        assert out.returncode == 1 and len(lines) == 1, out.stderr
        assert expected in lines[0] and str(tmp_path / "file") in lines[0], lines


def test_a_file_size_limit_is_one_line_naming_the_file(tmp_path):
    # RLIMIT_FSIZE holds for root too; Python ignores SIGXFSZ, so the write fails with EFBIG
    out = _demo(tmp_path / "run", file_size_limit=200)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1 and len(lines) == 1, out.stderr
    assert "kernels_demo.json): File too large [errno 27]; " in lines[0] and "ulimit -f" in lines[0]
    assert not list((tmp_path / "run").glob("*.tmp"))


@pytest.mark.parametrize(
    "code, advice",
    [
        (errno.ENOSPC, "free space"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "permission"),
        (errno.EDQUOT, "quota"),
        (errno.ELOOP, "symbolic-link loop"),
    ],
)
def test_os_errors_read_as_one_line(code, advice):
    e = errors.from_os_error(OSError(code, os.strerror(code), "/runs/x/metrics.jsonl"))
    text = str(e)
    assert "\n" not in text and text.startswith("cannot read or write (/runs/x/metrics.jsonl): ")
    assert f"{os.strerror(code)} [errno {code}]; " in text and advice in text
