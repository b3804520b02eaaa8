"""Zero-shot scoring against numpy, and the zeroshot job on a tiny pretraining run."""

import json
import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest

from ddjax import scoring
from ddjax.data import classnames
from ddjax.jobs import zeroshot
from tests.test_tensorboard import images_by_tag, scalars_by_tag


def test_accuracy_report_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7))
    labels = rng.integers(0, 6, size=50)  # class 6 never occurs
    report = scoring.accuracy_report(logits, labels, 7)
    pred = logits.argmax(1)
    assert report["top1"] == np.mean(pred == labels)
    top5 = [labels[i] in np.argsort(-logits[i])[:5] for i in range(50)]
    assert report["top5"] == np.mean(top5)
    per_class = [np.mean(pred[labels == c] == c) for c in range(6)]
    np.testing.assert_allclose(report["per_class"][:6], per_class)
    assert report["per_class"][6] is None
    np.testing.assert_allclose(report["mean_class_acc"], np.mean(per_class))


def test_ensemble_and_cosine():
    feats = jnp.asarray(np.random.default_rng(1).normal(size=(3, 2, 4)).astype(np.float32))
    text = jnp.asarray(np.random.default_rng(2).normal(size=(5, 4)).astype(np.float32))
    mixed = np.asarray(scoring.ensemble(feats, 0.25))
    np.testing.assert_allclose(
        mixed, 0.25 * np.asarray(feats[:, 1]) + np.asarray(feats[:, 0]), rtol=1e-6
    )
    logits = np.asarray(scoring.cosine_logits(jnp.asarray(mixed), text))
    a = mixed / np.linalg.norm(mixed, axis=1, keepdims=True)
    b = np.asarray(text) / np.linalg.norm(np.asarray(text), axis=1, keepdims=True)
    np.testing.assert_allclose(logits, a @ b.T, rtol=1e-5, atol=1e-6)


def test_zeroshot_job(run_dir, synthetic_tiny, tmp_path):
    from configs import zeroshot as zeroshot_config
    from tests.test_train import data_root

    config = zeroshot_config.get_config("smoke")
    config.checkpoint = str(run_dir)
    config.dataset = "synthetic_shapes/tiny"
    config.data_dir = data_root(synthetic_tiny)
    config.npoints, config.point_all, config.num_paths, config.t = 256, 300, 2, 100
    result = zeroshot.run(config, str(tmp_path))
    saved = json.loads((tmp_path / "zeroshot.json").read_text())
    for key in (
        "top1",
        "top5",
        "mean_class_acc",
        "per_class",
        "num_paths",
        "t",
        "ratio",
        "dataset",
        "checkpoint_step",
        "teacher",
    ):
        assert key in saved, key
    assert saved["num_samples"] == len(synthetic_tiny.as_data_source("test"))  # the test split only
    assert saved["checkpoint_step"] == 2 and saved["num_paths"] == 2 and saved["t"] == 100
    assert (tmp_path / "confusion.png").is_file()
    # TensorBoard: the accuracies at the checkpoint's step and the confusion matrix as an image
    events = tmp_path / "events.out.tfevents.zeroshot"
    assert scalars_by_tag(events) == {
        f"zeroshot/{k}": [(2, float(np.float32(saved[k])))]
        for k in ("top1", "top5", "mean_class_acc")
    }
    assert images_by_tag(events) == {
        "zeroshot/confusion": (tmp_path / "confusion.png").read_bytes()
    }
    # same seed, same numbers (text features from the cache)
    again = zeroshot.run(config, str(tmp_path))
    assert again["top1"] == result["top1"] and again["per_class"] == result["per_class"]
    cached = list(tmp_path.glob("text_features_*.npy"))
    assert len(cached) == 1
    good = cached[0].read_bytes()
    # a truncated cache (a killed, older non-atomic write)
    cached[0].write_bytes(good[: len(good) // 2])
    third = zeroshot.run(config, str(tmp_path))
    # recomputed, identically
    assert third["top1"] == result["top1"] and cached[0].read_bytes() == good


def test_a_second_evaluation_compiles_nothing_new(run_dir, synthetic_tiny, tmp_path):
    # Two evaluations of the same run, each a new process as a user runs them, sharing the
    # persistent compilation cache: the second finds every program it needs (the cache gains no
    # entry), and says when its first batch was done. Every program is stored here (threshold 0 s),
    # not only those over 1 s.
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT, python_path
    from tests.test_train import data_root

    cache = tmp_path / "cache"
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=python_path(),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    env.pop("JAX_COMPILATION_CACHE_DIR", None)

    def evaluate(name: str, cache, *flags: str) -> set[str]:
        proc = subprocess.run(
            [
                sys.executable,
                "main.py",
                "--config=configs/zeroshot.py:smoke",
                f"--config.checkpoint={run_dir}",
                "--config.dataset=synthetic_shapes/tiny",
                f"--config.data_dir={data_root(synthetic_tiny)}",
                "--config.npoints=256",
                "--config.point_all=300",
                "--config.num_paths=2",
                "--config.t=100",
                f"--workdir={tmp_path / name}",
                f"--compilation_cache_dir={cache}",
                *flags,
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert re.search(r"^first step after \d+\.\d s$", proc.stdout, re.M), proc.stdout
        return set(os.listdir(cache)) if cache.is_dir() else set()

    first = evaluate("a", cache)
    assert len(first) > 3 and all(name.endswith("-cache") for name in first)
    assert evaluate("b", cache) == first
    # Turned off, nothing is written, even into an empty folder.
    assert evaluate("c", tmp_path / "other_cache", "--nocompilation_cache") == set()


def test_zeroshot_job_errors(tmp_path):
    from configs import zeroshot as zeroshot_config

    config = zeroshot_config.get_config("modelnet40")
    with pytest.raises(ValueError, match=r"pass --config.checkpoint=RUN_DIR"):
        zeroshot.run(config, str(tmp_path))
    config.checkpoint = str(tmp_path)
    with pytest.raises(ValueError, match=r"is not a pretraining run folder \(no config.json\)"):
        zeroshot.run(config, str(tmp_path))
    with pytest.raises(ValueError, match=r"unknown dataset 'modelnet41'"):
        zeroshot_config.get_config("modelnet41")


def test_sweep_and_ratios(run_dir, synthetic_tiny, tmp_path):
    from configs import zeroshot as zeroshot_config
    from tests.test_train import data_root

    config = zeroshot_config.get_config("smoke")
    config.checkpoint = str(run_dir)
    config.dataset = "synthetic_shapes/tiny"
    config.data_dir = data_root(synthetic_tiny)
    config.npoints, config.point_all, config.batch_size = 128, 150, 24
    config.ratios = "0,0.5,1"
    config.num_paths, config.t = 16, 300
    plain = zeroshot.run(config, str(tmp_path))
    lines = (tmp_path / "ratios.csv").read_text().splitlines()
    assert lines[0] == "ratio,top1,top5,mean_class_acc" and len(lines) == 4
    config.sweep = True
    rows = zeroshot.run(config, str(tmp_path))["sweep"]
    csv = (tmp_path / "sweep.csv").read_text().splitlines()
    assert csv[0] == "num_paths,t,top1,top5,mean_class_acc" and len(csv) == 51
    assert {(r["num_paths"], r["t"]) for r in rows} == {
        (n, t) for n in (1, 2, 4, 8, 16) for t in range(0, 1000, 100)
    }
    # The sweep's (N=16, t=300) is the plain evaluation at those settings (same keys, all 16 paths).
    row = next(r for r in rows if r["num_paths"] == 16 and r["t"] == 300)
    assert row["top1"] == plain["top1"]
    assert (tmp_path / "sweep.md").read_text().count("\n|") >= 6 and (
        tmp_path / "sweep.png"
    ).is_file()
    events = tmp_path / "events.out.tfevents.zeroshot_sweep"
    assert scalars_by_tag(events)["sweep/N16_t300/top1"] == [(2, float(np.float32(row["top1"])))]
    assert len(scalars_by_tag(events)) == 3 * 50
    assert images_by_tag(events) == {"sweep/top1": (tmp_path / "sweep.png").read_bytes()}


def test_zeroshot_job_on_real_modelnet40(run_dir, modelnet_prepared, tmp_path):
    from configs import zeroshot as zeroshot_config

    builder = modelnet_prepared["modelnet40"]
    config = zeroshot_config.get_config("modelnet40")
    config.checkpoint = str(run_dir)
    config.data_dir = str(pathlib.Path(builder.data_dir).parents[1])
    # the tiny run's tokenizer, fewer paths
    config.num_groups, config.group_size, config.num_paths = 16, 8, 2
    result = zeroshot.run(config, str(tmp_path))
    # 29 real test shapes, nothing else
    assert result["num_samples"] == len(builder.as_data_source("test"))
    assert result["class_names"] == list(classnames.MODELNET40)  # underscores kept
    assert result["ratio"] == 0.25 and result["t"] == 600
