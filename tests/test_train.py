"""The trainer end to end: main.py's smoke run, exact resume, multi-device equivalence, config
errors."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import pretrain
from ddjax import checkpoints, errors, figures, run_folder
from ddjax.jobs import pretrain as pretrain_job
from ddjax.metrics import read_metrics
from ddjax.models import dual_denoising as dd
from ddjax.teachers import tiny_clip
from tests.conftest import TEST_TEACHER, python_path
from tests.test_tensorboard import scalars_by_tag

ROOT = pathlib.Path(__file__).resolve().parents[1]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")


def tiny_run_config(data_dir, teacher=None, **overrides):
    """The smoke config on the tiny synthetic set (72 records: 2 steps per epoch at batch 32), with
    the tests' trained teacher `teacher` (conftest's teacher_dir) in place of its own tiny one."""
    config = pretrain.get_config(overrides.pop("arg", "smoke"))
    config.dataset = "synthetic_shapes/tiny"
    config.data_dir = str(data_dir)
    if teacher is not None:
        config.tiny_teacher.enabled, config.teacher = False, str(teacher)
    # small and fast: these tests check the mechanics, not the accuracy
    for key, value in dict(width=32, depth=2, num_heads=2, num_groups=16, group_size=8).items():
        config.model[key] = value
    config.eval.dataset = ""
    config.log_every = 1
    config.epochs, config.warmup_epochs = 4, 1
    for key, value in overrides.items():
        target = config
        *path, leaf = key.split(".")
        for p in path:
            target = target[p]
        target[leaf] = value
    return config


def data_root(builder) -> str:
    return str(pathlib.Path(builder.data_dir).parents[2])  # <data_dir>/synthetic_shapes/tiny/1.0.0


def test_smoke_run_through_main_writes_everything(synthetic_tiny, teacher_dir, tmp_path):
    # Run from another directory with a relative --workdir, as a user would. The run trains its own
    # tiny teacher, as the tests' trained teacher was trained (the character-level tokenizer).
    data_dir = data_root(synthetic_tiny)
    cwd, tmp_path = tmp_path, tmp_path / "run"
    cmd = [
        sys.executable,
        str(ROOT / "main.py"),
        f"--config={ROOT}/configs/pretrain.py:smoke",
        "--workdir=run",
        "--config.dataset=synthetic_shapes/tiny",
        f"--config.data_dir={data_dir}",
        "--config.total_steps=4",
        "--config.log_every=2",
        "--config.checkpoint_every=2",
        *(f"--config.tiny_teacher.{k}={v}" for k, v in TEST_TEACHER.items()),
        "--config.eval.dataset=synthetic_shapes/tiny",
        f"--config.eval.data_dir={data_dir}",
    ]
    env = dict(ENV, PYTHONPATH=python_path())
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (
        "step 4/4" in proc.stdout
        and "ETA" in proc.stdout
        and "zero-shot synthetic_shapes/tiny" in proc.stdout
    )
    # once, after step 1
    assert len(re.findall(r"^first step after \d+\.\d s$", proc.stdout, re.M)) == 1
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"]["width"] == 96 and config["resolved"]["teacher"] == "./teacher"
    summary = json.loads((tmp_path / "model_summary.json").read_text())
    assert summary["total"] == sum(v for k, v in summary.items() if k != "total")
    rows = read_metrics(str(tmp_path))
    assert [r["step"] for r in rows] == [2, 4]
    for key in (
        "step",
        "loss",
        "loss_rec",
        "loss_image",
        "loss_text",
        "lr",
        "grad_norm",
        "param_norm",
        "steps_per_sec",
    ):
        assert all(np.isfinite(r[key]) for r in rows), key
    # orbax's numeric step folders
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"]
    result = json.loads((tmp_path / "zeroshot.json").read_text())
    assert (
        0 <= result["top1"] <= 1 and result["checkpoint_step"] == 4 and result["num_samples"] == 24
    )
    # TensorBoard: every scalar of metrics.jsonl at its steps, the evaluation at step 4
    events = scalars_by_tag(tmp_path / "events.out.tfevents.pretrain")
    assert set(events) == {k for r in rows for k in r} - {"step", "wall_time"}
    for tag, points in events.items():
        assert points == [(r["step"], float(np.float32(r[tag]))) for r in rows], tag
    assert scalars_by_tag(tmp_path / "events.out.tfevents.zeroshot") == {
        f"zeroshot/{k}": [(4, float(np.float32(result[k])))]
        for k in ("top1", "top5", "mean_class_acc")
    }
    assert all((tmp_path / f"curves.{s}").stat().st_size > 0 for s in ("png", "pdf"))
    # the run directory holds its own teacher, which learned (the fallback tokenizer does): the
    # same teacher as the tests' own, trained by tiny_clip.train directly
    report = json.loads((tmp_path / "teacher" / tiny_clip.REPORT).read_text())
    assert report["tokenizer"] == "fallback" and report["train_zero_shot_top1"] >= 0.5, report
    assert report == json.loads((teacher_dir / tiny_clip.REPORT).read_text())
    # The same command again: the run is finished, so it exits at once.
    again = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "run already finished at step 4" in again.stdout


def _params(workdir, step):
    manager = ocp.CheckpointManager(pathlib.Path(workdir) / "checkpoints")
    state = checkpoints.restore_state(manager, step, pathlib.Path(workdir) / "checkpoints")
    manager.close()
    return state


def test_resume_is_exact(synthetic_tiny, teacher_dir, tmp_path, capsys):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    cfg = lambda steps, **kw: tiny_run_config(
        data_root(synthetic_tiny),
        teacher_dir,
        total_steps=steps,
        checkpoint_every=3,
        **kw,
    )
    pretrain_job.run(cfg(6), str(straight))
    pretrain_job.run(cfg(3), str(resumed))
    # The same checkpoint as ddjax wrote it before the block stacks were scanned (`encoder/block00`,
    # ...): it evaluates to the same variables, and below it resumes to the same run, to the last
    # bit.
    old = tmp_path / "old"
    shutil.copytree(resumed, old)
    _rewrite_unrolled(old, 3)
    (_, want, _), (_, got, _) = (
        checkpoints.restore_run(str(resumed)),
        checkpoints.restore_run(str(old)),
    )
    assert jax.tree_util.tree_structure(want) == jax.tree_util.tree_structure(got)
    for x, y in zip(jax.tree_util.tree_leaves(want), jax.tree_util.tree_leaves(got)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    capsys.readouterr()
    pretrain_job.run(cfg(6, allow_changes="total_steps"), str(old))
    assert "in the unrolled layout of earlier ddjax versions (converted" in capsys.readouterr().out
    # Training longer changes the run: refused unless asked for, and then it resumes from checkpoint
    # 3.
    before = (resumed / "config.json").read_bytes()
    with pytest.raises(
        run_folder.RunFolderError, match=r"total_steps: 3 -> 6.*--config.allow_changes=total_steps"
    ):
        pretrain_job.run(cfg(6), str(resumed))
    assert (resumed / "config.json").read_bytes() == before
    pretrain_job.run(cfg(6, allow_changes="total_steps"), str(resumed))
    for run in (resumed, old):
        a, b = read_metrics(str(straight)), read_metrics(str(run))
        assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
        for ra, rb in zip(a, b):
            for key in (
                "loss",
                "loss_rec",
                "loss_image",
                "loss_text",
                "lr",
                "grad_norm",
                "param_norm",
            ):
                assert ra[key] == rb[key], (run.name, ra["step"], key)
        pa, pb = _params(straight, 6), _params(run, 6)
        for x, y in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def rewrite_state(workdir, step, change) -> None:
    """Checkpoint `step` of a run saved again with its train state passed through `change` (the
    data position kept)."""
    folder = pathlib.Path(workdir) / "checkpoints"
    state = _params(workdir, step)
    data = pathlib.Path(workdir) / "saved_data"
    shutil.copytree(folder / str(step) / "data", data)
    shutil.rmtree(folder / str(step))
    manager = ocp.CheckpointManager(folder)
    manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(change(state))))
    manager.wait_until_finished()
    manager.close()
    shutil.copytree(data, folder / str(step) / "data")
    shutil.rmtree(data)


def _rewrite_unrolled(workdir, step):
    """Checkpoint `step` of a run rewritten as ddjax wrote it before the block stacks were scanned:
    every `blocks` subtree (parameters and Adam moments) as `block00`, `block01`, ... (the data
    position kept)."""
    assert not dd.is_unrolled(_params(workdir, step))
    rewrite_state(workdir, step, dd.unstack_layers)
    folder = pathlib.Path(workdir) / "checkpoints"
    assert dd.is_unrolled(checkpoints.state_metadata(folder, step))


def test_combined_ablation_variant_runs(synthetic_tiny, teacher_dir, tmp_path):
    config = tiny_run_config(
        data_root(synthetic_tiny), teacher_dir, arg="smoke,s=0,delta=1000,learned", total_steps=2
    )
    assert (
        config.model.noise_scale == 0
        and config.model.delta == 1000
        and config.model.feature_input == "learned"
    )
    out = pretrain_job.run(config, str(tmp_path))
    assert out["step"] == 2 and np.isfinite(out["metrics"]["loss"])


def test_one_feature_type_trains_and_logs_it(
    synthetic_tiny, teacher_dir, tmp_path, capsys, monkeypatch
):
    # The image-only ablation (`--config.model.feature_types=image`, which ml_collections reads as
    # ('image',)): it used to compile, then fail on the missing text loss.
    config = tiny_run_config(
        data_root(synthetic_tiny), teacher_dir, total_steps=2, checkpoint_every=1
    )
    config.model.feature_types = ("image",)
    # the curves at every checkpoint when the last drawing is old enough (here: always)
    drawn = []
    draw = pretrain_job.write_curves
    monkeypatch.setattr(pretrain_job, "CURVES_EVERY_S", 0)
    monkeypatch.setattr(
        pretrain_job, "write_curves", lambda w, r: (drawn.append(len(r)), draw(w, r))
    )
    out = pretrain_job.run(config, str(tmp_path))
    assert drawn == [1, 2] and (tmp_path / "curves.png").is_file()
    assert "image" in figures.texts(
        figures.curves_figure(read_metrics(str(tmp_path)), [], title="")
    )
    assert out["step"] == 2 and np.isfinite(out["metrics"]["loss"])
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all("loss_image" in r and "loss_text" not in r for r in records if "loss" in r)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("step ")]
    assert lines and all(" img " in x and " txt " not in x for x in lines), lines


def test_sigkill_then_the_same_command_finishes(synthetic_tiny, teacher_dir, tmp_path):
    import signal
    import time

    data_dir = data_root(synthetic_tiny)
    cmd = [
        sys.executable,
        "main.py",
        "--config=configs/pretrain.py:smoke",
        f"--workdir={tmp_path}",
        "--config.dataset=synthetic_shapes/tiny",
        f"--config.data_dir={data_dir}",
        "--config.total_steps=40",
        "--config.log_every=1",
        # 10 saves, not 20 (each about 2 s on 2 busy cores)
        "--config.checkpoint_every=4",
        "--config.tiny_teacher.enabled=False",
        f"--config.teacher={teacher_dir}",
        "--config.model.width=32",
        "--config.model.depth=2",
        "--config.model.num_heads=2",
        "--config.eval.dataset=",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        names = os.listdir(tmp_path / "checkpoints") if (tmp_path / "checkpoints").is_dir() else []
        # (in-progress saves are '<step>.orbax-checkpoint-tmp')
        if any(int(d) >= 8 for d in names if d.isdigit()):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)  # no clean-up of any kind
    proc.wait()
    killed_at = max(r["step"] for r in read_metrics(str(tmp_path)))
    assert killed_at < 40
    # A damaged middle line (the resume once failed with JSONDecodeError) is named, kept as it is
    # and skipped by readers.
    log = tmp_path / "metrics.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[1] = b'{"step": 2, "loss": \xff\xfe'
    log.write_bytes(b"\n".join(lines))
    again = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    assert "resumed from" in again.stdout
    assert f"note: {log}:2 is not a metrics record (" in again.stderr, again.stderr[-2000:]
    assert log.read_bytes().split(b"\n")[1] == lines[1]
    rows = read_metrics(str(tmp_path))
    # replayed steps replace their old lines
    assert [r["step"] for r in rows] == [1, *range(3, 41)]
    # and their events: TensorBoard's stream holds each step once, with metrics.jsonl's values
    events = scalars_by_tag(tmp_path / "events.out.tfevents.pretrain")
    for tag in ("loss", "loss_rec", "lr", "grad_norm"):
        assert events[tag] == [(r["step"], float(np.float32(r[tag]))) for r in rows], tag
    assert "40" in os.listdir(tmp_path / "checkpoints")
    assert (tmp_path / "curves.png").is_file()  # drawn at the end (no evaluation follows)


MULTI_DEVICE_SCRIPT = """
import json, sys
import jax
from ddjax.jobs import pretrain as pretrain_job
from tests.test_train import tiny_run_config
config = tiny_run_config(sys.argv[1], sys.argv[3], total_steps=1, batch_size=8)
out = pretrain_job.run(config, sys.argv[2])
print("RESULT", json.dumps({"devices": jax.device_count(), "loss": out["metrics"]["loss"],
                            "param_norm": out["metrics"]["param_norm"]}))
bad = tiny_run_config(sys.argv[1], total_steps=1, batch_size=6)
try:
    pretrain_job.check_config(bad, sys.argv[2])
except ValueError as e:
    print("ERROR", e)
"""


def test_four_devices_match_one(synthetic_tiny, teacher_dir, tmp_path):
    results = {}
    for devices in (1, 4):
        env = dict(
            ENV,
            XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
            PYTHONPATH=python_path(),
        )
        workdir = tmp_path / f"d{devices}"
        proc = subprocess.run(
            [
                sys.executable,
                "-c",
                MULTI_DEVICE_SCRIPT,
                data_root(synthetic_tiny),
                str(workdir),
                str(teacher_dir),
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-4000:]
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
        results[devices] = json.loads(line.split(" ", 1)[1])
        errors = [ln for ln in proc.stdout.splitlines() if ln.startswith("ERROR")]
        if devices == 4:
            assert errors and "config.batch_size): 6 is not divisible by the 4 devices" in errors[0]
    assert results[4]["devices"] == 4 and results[1]["devices"] == 1
    np.testing.assert_allclose(results[4]["loss"], results[1]["loss"], rtol=1e-4)
    np.testing.assert_allclose(results[4]["param_norm"], results[1]["param_norm"], rtol=1e-5)


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(dataset="shapenet56"), r"\(config.dataset\): must be one of .*got 'shapenet56'"),
        (dict(total_steps=-1), r"\(config.total_steps\): must be in \[0, inf\], got -1"),
        (dict(batch_size=0), r"\(config.batch_size\): must be in \[1, inf\], got 0"),
        (dict(teacher_mode="offline"), r"\(config.teacher_mode\): must be one of"),
        (dict(num_points=8), r"\(config.num_points\): 8 points are fewer than the tokenizer needs"),
        (dict(**{"model.delta": 0}), r"\(config.model.delta\): must be an integer >= 1"),
        (dict(lr=-1.0), r"\(config.lr\): must be > 0.0, got -1.0"),
    ],
)
def test_bad_config_values(tmp_path, overrides, match):
    with pytest.raises(errors.ConfigError, match=match):
        pretrain_job.check_config(tiny_run_config(tmp_path, **overrides), str(tmp_path / "run"))


def test_unread_config_keys_are_reported(tmp_path):
    config = tiny_run_config(tmp_path)
    config.unlock()
    config.learning_rate = 1e-3
    config.eval.rato = 0.3
    with pytest.raises(
        errors.ConfigError, match=r"nothing reads the keys \['eval.rato', 'learning_rate'\]"
    ):
        pretrain_job.check_config(config, str(tmp_path / "run"))


def test_missing_data_says_how_to_prepare(tmp_path):
    config = pretrain.get_config()
    config.data_dir = str(tmp_path)
    with pytest.raises(Exception, match=r"not prepared .*configs/prepare.py:shapenet55"):
        pretrain_job.run(config, str(tmp_path / "run"))
