"""The attacks on real pretraining runs (the tiny 2-step run, and the smoke run cut to 200 steps):
input gradients through re-tokenisation, and the attack job end to end (attack.json, Table 2, Figure
8, resume, the sweep, real ModelNet40, sharding); TensorBoard's server on the smoke run."""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs import attack as attack_config
from ddjax import attacks, checkpoints, metrics, robustness
from ddjax.jobs import attack
from ddjax.models import dual_denoising as dd
from tests.conftest import python_path
from tests.test_tensorboard import images_by_tag, scalars_by_tag

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_model(run_dir):
    run_config, variables, _ = checkpoints.restore_run(str(run_dir))
    return ml_collections.ConfigDict(run_config["model"]), variables


@pytest.mark.parametrize("t", [0, 300])
@pytest.mark.highest_precision
def test_input_gradients_flow_through_the_gathers(tiny_model, t):
    from ddjax import pointcloud

    model_config, variables = tiny_model
    infer = dd.make_inference(model_config).infer
    text = jax.random.normal(jax.random.key(3), (12, model_config.teacher_dim))
    logits_fn = attacks.zero_shot_logits(infer, variables, text, ratio=0.25, t=t, num_paths=2)
    # A random cloud: no exact distance ties (the procedural shapes have them), so small moves keep
    # indices.
    points = jax.random.uniform(jax.random.key(0), (2, 128, 3), minval=-1.0, maxval=1.0)
    key = jax.random.key(1)
    f = jax.jit(lambda x: jnp.sum(logits_fn(x, key)[:, 0]))
    grad = np.asarray(jax.grad(f)(points))
    assert np.isfinite(grad).all()
    # Non-zero for the points that belong to some kNN group (the stop-gradient of training is off).
    assert (np.abs(grad).sum(-1) > 0).mean() > 0.3
    if t:
        return

    # At t = 0 the tokens are a deterministic function of the cloud. Along a direction small enough
    # that FPS and kNN pick the same indices, a central difference measures the derivative through
    # the gathers.
    def indices(x):
        idx = pointcloud.fps(x, model_config.num_groups)  # (B, G)
        # (B, G, K)
        return idx, pointcloud.knn(pointcloud.gather_points(x, idx), x, model_config.group_size)

    def same_indices(x):
        return all(np.array_equal(a, b) for a, b in zip(indices(points), indices(x)))

    h = 2e-4
    for seed in range(20):  # the first random direction along which no index changes
        v = np.asarray(jax.random.normal(jax.random.key(seed), points.shape))
        if same_indices(points + h * v) and same_indices(points - h * v):
            break
    else:
        pytest.fail("every direction changed an FPS or kNN index; the check needs a smaller step")
    fd = (float(f(points + h * v)) - float(f(points - h * v))) / (2 * h)
    np.testing.assert_allclose(fd, float(np.sum(grad * v)), rtol=0.05, atol=0.02)


# `make test SMOKE_RUN=DIR`: the smoke-run tests use that finished `make run` (CI's user leg passes
# its own, trained moments before) instead of training one.
SMOKE_RUN_ENV = "DDJAX_TEST_SMOKE_RUN"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """`make run`'s smoke pretraining cut to 200 of its 738 steps (about a third of make run's
    time, its data and tiny teacher included): predictions that depend on the input, unlike the
    2-step run's (set by the feature noise). Or, where $DDJAX_TEST_SMOKE_RUN names one, a finished
    `make run` (all 738 steps), with the smoke data prepared here."""
    from configs import pretrain
    from ddjax.data import prepare
    from ddjax.jobs import pretrain as pretrain_job

    root = tmp_path_factory.mktemp("smoke")
    config = pretrain.get_config("smoke")
    config.data_dir = str(root / "tfds")
    given = os.environ.get(SMOKE_RUN_ENV)
    if given:
        made = pathlib.Path(given).resolve()
        saved = made / "config.json"
        if not (made / "zeroshot.json").is_file() or not saved.is_file():
            pytest.fail(f"{SMOKE_RUN_ENV}={given}: not a finished `make run` (no zeroshot.json)")
        if json.loads(saved.read_text())["model"] != json.loads(config.model.to_json()):
            pytest.fail(f"{SMOKE_RUN_ENV}={given}: its model is not the smoke config's")
        (root / "run").symlink_to(made)
        prepare.prepare(config.dataset, config.data_dir)
        return root
    config.total_steps, config.epochs, config.warmup_epochs = 200, 14, 1
    config.eval.dataset = ""
    pretrain_job.run(config, str(root / "run"))
    return root


def job_config(run_dir, synthetic_tiny, **overrides):
    from tests.test_train import data_root

    config = attack_config.get_config("smoke")
    config.checkpoint = str(run_dir)
    config.dataset = "synthetic_shapes/tiny"
    config.data_dir = data_root(synthetic_tiny)
    config.npoints, config.point_all = 128, 150
    config.max_shapes, config.batch_size = 20, 12  # two batches, the second padded with 4 copies
    config.settings = "1:0"
    config.eps = "0,0.3"
    config.steps, config.curve_every = 10, 5
    config.cw.search_steps, config.cw.iterations = 2, 6
    for key, value in overrides.items():
        config[key] = value
    return config


@pytest.mark.xdist_group("smoke_run")  # one worker trains the module's smoke run
def test_attack_job_on_the_smoke_run(smoke_run, tmp_path, capsys):
    # the first 24 test shapes (CI time: the smoke config's 48 took 179 s alone, these 125 s), 512
    # points, the run's tokenization
    shapes = 24
    config = attack_config.get_config("smoke")
    config.checkpoint, config.data_dir = str(smoke_run / "run"), str(smoke_run / "tfds")
    config.max_shapes = shapes
    config.batch_size = 16  # 16 + 8: the last batch padded with 8 copies
    config.settings, config.eps = "1:0", "0,0.05"
    config.steps, config.curve_every = 10, 5
    config.cw.search_steps, config.cw.iterations = 2, 10
    # CI time: one seed, a majority of 2 draws (both) per check
    config.seeds, config.success_draws = 1, 2
    report = attack.run(config, str(tmp_path))
    saved = json.loads((tmp_path / "attack.json").read_text())
    assert saved["results"] == report["results"] and saved["num_samples"] == shapes
    rows = saved["results"]
    assert len(rows) == 2 * (2 + 2 + 1)  # modes x (IFGM and PGD at two epsilons, C&W)
    assert {(r["attack"], r["mode"]) for r in rows} == {
        (a, m) for a in attacks.ATTACKS for m in attacks.MODES
    }
    for r in rows:
        for key in (
            "attack",
            "eps",
            "mode",
            "num_paths",
            "t",
            "robust_acc",
            "robust_acc_std",
            "success_rate",
            "linf",
            "l2",
            "chamfer",
        ):
            assert key in r, key
        assert (r["num_paths"], r["t"]) == (1, 0) and (r["eps"] is None) == (r["attack"] == "cw")
        assert 0 <= r["robust_acc"] <= 1 and 0 <= r["success_rate"] <= 1
    clean = saved["clean_acc"]
    assert len(clean) == 1 and clean[0]["num_paths"] == 1 and clean[0]["acc"] > 0
    for r in rows:
        if r["eps"] == 0:  # no room to move: exactly the clean result, never the target
            assert r["robust_acc"] == clean[0]["acc"] and r["success_rate"] == 0
            assert r["linf"] == r["l2"] == r["chamfer"] == 0 and r["kept_correct"] == 1.0
        elif r["eps"] is not None:
            assert 0.03 < r["linf"] <= 0.05 + 1e-6 and r["l2"] > 0 and r["chamfer"] > 0
    # The clean prediction is never the target (it is the runner-up), so any success is the attack's
    # doing.
    big = [r for r in rows if r["eps"] == 0.05]
    assert all(r["success_rate"] >= 0.1 for r in big), [
        (r["attack"], r["mode"], r["success_rate"]) for r in big
    ]
    assert all(r["success_rate"] > 0 and 0 < r["l2"] for r in rows if r["attack"] == "cw")
    for r in rows:  # what the attack believed, and the distortion of what it returned as successes
        dist = r["l2_distribution"]
        assert 0 <= r["attack_success_rate"] <= 1 and dist["count"] == round(
            r["attack_success_rate"] * shapes
        )
        if r["eps"] == 0:
            # The clean cloud itself: the random model can put the target on top of the check's
            # draws (the target is only the runner-up under the evaluation key), never of the
            # evaluation's.
            assert dist["near_clean"] == dist["count"] and r["success_rate"] == 0
        else:  # C&W judges after each update, PGD/IFGM have moved: no practically clean "success"
            assert dist["near_clean"] == 0
        if r["attack"] == "cw":
            assert dist["count"] > 0 and 1e-4 < dist["min"] <= dist["p50"] <= dist["max"]
    # And they lower the accuracy of the shapes classified correctly (robust_acc alone can hide
    # this: the targeted protocol also moves wrong predictions to a runner-up that is the true
    # class).
    attacked = big + [r for r in rows if r["attack"] == "cw"]
    assert np.mean([r["kept_correct"] for r in attacked]) < 0.9, [
        r["kept_correct"] for r in attacked
    ]
    curve = next(c for c in saved["curves"] if c["attack"] == "ifgm" and c["eps"] == 0)
    assert curve["steps"] == [0, 5, 10] and curve["acc"] == [clean[0]["acc"]] * 3
    table = (tmp_path / "table2.md").read_text()
    assert "| 1 | 0 | paper |" in table and "| 1 | 0 | eot |" in table and "C&W" in table
    assert (
        "one seed" in table
        and "±" not in table
        and "attack's verdict" in table
        and "kept_correct" in table
    )
    assert (tmp_path / "figure8.png").stat().st_size > 1000 and (tmp_path / "figure8.pdf").is_file()
    assert (tmp_path / "adversarial_examples.png").stat().st_size > 1000
    # TensorBoard: each row's accuracies at the checkpoint's step, both figures as images
    events = tmp_path / "events.out.tfevents.attack"
    step = saved["checkpoint_step"]
    got = scalars_by_tag(events)
    assert got["clean/N1_t0/acc"] == [(step, float(np.float32(clean[0]["acc"])))]
    for r in rows:
        name = r["attack"] if r["eps"] is None else f"{r['attack']}_eps{r['eps']:g}"
        for key in ("robust_acc", "success_rate", "attack_success_rate"):
            tag = f"{name}/N1_t0/{r['mode']}/{key}"
            assert got.pop(tag) == [(step, float(np.float32(r[key])))], tag
    assert list(got) == ["clean/N1_t0/acc"]
    assert images_by_tag(events) == {
        f"attack/{n}": (tmp_path / f"{n}.png").read_bytes()
        for n in ("figure8", "adversarial_examples")
    }
    # the first PGD unit's clouds, within eps
    with np.load(tmp_path / "adversarial_examples.npz") as ex:
        moved = np.abs(ex["adversarial"] - ex["clean"][None]).max(axis=(2, 3))  # (E, S)
        assert str(ex["unit"]).endswith(",pgd") and np.all(moved <= ex["eps"][:, None] + 1e-6)
    # Run again: every unit comes from attack_progress.jsonl, with the same numbers.
    capsys.readouterr()
    again = attack.run(config, str(tmp_path))
    assert again["results"] == rows and capsys.readouterr().out.count("done earlier") == 6


@pytest.mark.xdist_group("smoke_run")  # one worker trains the module's smoke run
def test_certified_radius_holds_on_the_smoke_run(smoke_run, tmp_path):
    """The empirical guarantee (tests/test_certify.py: check_guarantee): L2 PGD on the
    smoothed classifier within 0.9 R never changes its certified prediction."""
    from tests.test_certify import check_guarantee

    assert check_guarantee(str(smoke_run / "run"), str(smoke_run / "tfds"), tmp_path, shapes=8) > 0


@pytest.mark.xdist_group("smoke_run")  # one worker trains the module's smoke run
def test_attack_noise_benchmark_on_the_smoke_run(smoke_run, capsys):
    """benchmarks/attack_noise.py (the README's randomness and swing figures): the model is random
    at N = 1, t = 0, and with the noise fixed PGD returns a target-reaching cloud exactly for the
    shapes whose iterate reached the target at some step (check on) or at the last step (check off).
    """
    from benchmarks import attack_noise

    capsys.readouterr()
    assert (
        attack_noise.main(
            [
                "--checkpoint",
                str(smoke_run / "run"),
                "--data-dir",
                str(smoke_run / "tfds"),
                "--shapes",
                "12",
                "--settings",
                "1:0",
                "--steps",
                "10",
                "--json",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    report = json.loads(lines[-1])  # the summary, after one measurement line per setting
    (row,) = report["settings"]
    assert [json.loads(line)["measurement"] for line in lines[:-1] if line.startswith("{")] == [row]
    assert report["shapes"] == 12 and (row["num_paths"], row["t"]) == (1, 0)
    assert row["logit_diff_max"] > 0 and 0 <= row["same_prediction"] <= 1  # two keys, two answers
    fixed = row["fixed_noise"]
    assert fixed["check_0"]["returned_reaches"] == fixed["check_0"]["reached_last_step"]
    assert fixed["check_8"]["returned_reaches"] == fixed["check_8"]["reached_any_step"] > 0
    assert row["check_s"] > 0 and row["gradient_s"] > 0


@pytest.mark.xdist_group("smoke_run")  # one worker trains the module's smoke run
def test_tensorboard_serves_the_smoke_run(smoke_run):
    """The README's `tensorboard --logdir runs/` on the smoke run's folder: the real server (this
    environment's `tensorboard` command) on localhost, each scalar read through its HTTP API equal
    to metrics.jsonl's, at the same steps and times; the evaluation's accuracy too, where there is
    one."""
    run = (smoke_run / "run").resolve()
    records = metrics.read_metrics(str(run))
    want = {k for r in records for k in r} - {"step", "wall_time"}
    if (run / "zeroshot.json").is_file():
        want |= {"zeroshot/top1", "zeroshot/top5", "zeroshot/mean_class_acc"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data/plugin/scalars"
    server = subprocess.Popen(
        [pathlib.Path(sys.executable).parent / "tensorboard", f"--logdir={run.parent}"]
        + ["--host=127.0.0.1", f"--port={port}", "--reload_interval=1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline, tags = time.time() + 120, {}
        while time.time() < deadline and set(tags.get(run.name, ())) != want:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/tags", timeout=10) as r:
                    tags = json.load(r)
            except OSError:
                pass  # not listening yet
            time.sleep(0.5)
        assert set(tags.get(run.name, ())) == want, (sorted(tags.get(run.name, ())), sorted(want))
        for tag in sorted(want):
            query = urllib.parse.urlencode({"run": run.name, "tag": tag})
            with urllib.request.urlopen(f"{url}/scalars?{query}", timeout=10) as r:
                points = json.load(r)  # [[wall_time, step, value], ...]
            if tag.startswith("zeroshot/"):
                result = json.loads((run / "zeroshot.json").read_text())
                value = float(np.float32(result[tag.split("/")[1]]))
                assert [(p[1], p[2]) for p in points] == [(result["checkpoint_step"], value)], tag
                continue
            rows = [r for r in records if tag in r]
            assert [p[1] for p in points] == [r["step"] for r in rows], tag
            np.testing.assert_array_equal(
                np.float32([p[2] for p in points]), np.float32([r[tag] for r in rows]), tag
            )
            np.testing.assert_allclose([p[0] for p in points], [r["wall_time"] for r in rows])
    finally:
        server.kill()
        server.wait()


def test_fixed_noise_makes_the_model_deterministic(tiny_model):
    model_config, variables = tiny_model
    text = jax.random.normal(jax.random.key(3), (12, model_config.teacher_dim))
    points = jax.random.uniform(jax.random.key(0), (3, 128, 3), minval=-1.0, maxval=1.0)
    random_fn = robustness.build_logits(model_config, variables, text, 0.25, 1, 0)
    fixed_fn = robustness.build_logits(
        model_config, variables, text, 0.25, 1, 0, fixed_key=jax.random.key(9)
    )
    a, b = (np.asarray(random_fn(points, jax.random.key(k))) for k in (1, 2))
    # N = 1, t = 0 is still random: the feature branch's noise is drawn
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(
        np.asarray(fixed_fn(points, jax.random.key(1))),
        np.asarray(fixed_fn(points, jax.random.key(2))),
    )
    np.testing.assert_array_equal(
        np.asarray(fixed_fn(points, None)), np.asarray(random_fn(points, jax.random.key(9)))
    )


def table_row(mode, attack, eps, robust, std, **extra):
    return {
        "num_paths": 8,
        "t": 100,
        "mode": mode,
        "attack": attack,
        "eps": eps,
        "robust_acc": robust,
        "robust_acc_std": std,
        "clean_acc": 0.5,
        "clean_acc_std": 0.02,
        "success_rate": 0.25,
        "attack_success_rate": 0.5,
        "kept_correct": 0.75,
        "l2_distribution": {"count": 3, "p50": 0.1234},
        **extra,
    }


def test_table2_layout_with_and_without_a_spread(tmp_path):
    rows = [table_row("paper", "pgd", 0.01, 0.4, 0.05), table_row("paper", "cw", None, 0.1, 0.0)]
    attack.write_table(tmp_path / "t.md", rows, [0.01], "modelnet40", seeds=3)
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert "mean ± std over 3 seeds" in lines[0]
    assert "| N | t | mode | clean | PGD 0.01 | C&W |" in lines
    assert "| 8 | 100 | paper | 50.0 ± 2.0 | 40.0 ± 5.0 | 10.0 ± 0.0 |" in lines
    assert "| 8 | 100 | paper | PGD 0.01 | 40.0 ± 5.0 | 25.0 | 50.0 | 75.0 | 0.123 |" in lines
    attack.write_table(tmp_path / "t1.md", rows, [0.01], "modelnet40", seeds=1)
    text = (tmp_path / "t1.md").read_text()
    assert (
        "±" not in text
        and "(one seed)" in text
        and "| 8 | 100 | paper | 50.0 | 40.0 | 10.0 |" in text
    )


def test_attack_sweep(run_dir, synthetic_tiny, tmp_path):
    config = job_config(
        run_dir,
        synthetic_tiny,
        sweep=True,
        modes="paper",
        sweep_num_paths="1,2",
        sweep_t="0,300",
        sweep_steps=2,
        sweep_eps=0.3,
        seeds=1,
    )
    rows = attack.run(config, str(tmp_path))["sweep"]
    assert [(r["num_paths"], r["t"]) for r in rows] == [(1, 0), (1, 300), (2, 0), (2, 300)]
    lines = (tmp_path / "sweep.csv").read_text().splitlines()
    assert (
        lines[0] == "num_paths,t,clean_acc,paper_robust_acc,paper_robust_acc_std,paper_success_rate"
        and len(lines) == 5
    )
    assert "| 2 |" in (tmp_path / "sweep.md").read_text()


def test_attack_config_errors(run_dir, synthetic_tiny, tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'modelnet10'"):
        attack_config.get_config("modelnet10")
    for field, value, message in (
        ("settings", "8-100", "is not N:t"),
        ("attacks", "pgd,fgsm", "not in"),
        ("modes", "adaptive", "not in"),
        ("eps", "0.01,x", "comma-separated"),
        ("curve_every", 3, "does not divide"),
        ("success_draws", -1, r"config.success_draws\): must be in \[0, inf\], got -1"),
    ):
        config = job_config(run_dir, synthetic_tiny)
        config[field] = value
        with pytest.raises(ValueError, match=message):
            attack.run(config, str(tmp_path))
    config = job_config(run_dir, synthetic_tiny)
    config.checkpoint = ""
    with pytest.raises(ValueError, match="--config.checkpoint"):
        attack.run(config, str(tmp_path))


def test_attack_job_on_real_modelnet40(run_dir, modelnet_prepared, tmp_path):
    builder = modelnet_prepared["modelnet40"]
    config = attack_config.get_config("modelnet40")
    assert (config.npoints, config.ratio, config.steps, config.seeds) == (1024, 0.25, 50, 3)
    assert config.settings == "8:100,8:500,8:900,16:500" and config.eps == "0.01,0.025,0.05,0.075"
    config.checkpoint = str(run_dir)
    config.data_dir = str(pathlib.Path(builder.data_dir).parents[1])
    config.num_groups, config.group_size = 16, 8  # the tiny run's tokenization
    config.settings, config.attacks, config.modes, config.eps = "1:100", "pgd", "paper", "0.01"
    config.steps, config.curve_every, config.seeds = 2, 1, 1
    report = attack.run(config, str(tmp_path))
    assert report["num_samples"] == len(builder.as_data_source("test"))  # the 29 real test shapes
    (row,) = report["results"]
    assert row["attack"] == "pgd" and row["eps"] == 0.01 and 0 < row["linf"] <= 0.01 + 1e-6


def test_main_reports_a_missing_run_in_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "main.py",
            "--config=configs/attack.py:smoke",
            f"--config.checkpoint={tmp_path / 'nothing'}",
            f"--workdir={tmp_path / 'out'}",
        ],
        cwd=ROOT,
        env=dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1 and "error: bad config value (config.checkpoint): " in proc.stderr
    assert (
        "nothing does not exist or is not a folder" in proc.stderr
        and not (tmp_path / "out").exists()
    )
    assert "Traceback" not in proc.stderr


SHARDED_SCRIPT = """
import json
import jax
from ddjax import robustness
from tests.test_robustness import toy_unit
print("RESULT", json.dumps({"devices": jax.device_count(), "result": toy_unit()}))
"""


def toy_unit():
    """run_unit on a noisy toy logit function: PGD, two epsilons, two seeds, two batches of 8."""
    from tests.test_attacks import noisy_mlp

    logits_fn = noisy_mlp(num_classes=4)
    cw = ml_collections.ConfigDict(
        dict(
            search_steps=1,
            iterations=1,
            learning_rate=0.01,
            initial_lambda=10.0,
            lower=0.0,
            upper=80.0,
        )
    )
    step_fn = robustness.make_attack_step(
        logits_fn,
        "pgd",
        mode="eot",
        eot_samples=2,
        draws_per_step=None,
        steps=4,
        curve_every=2,
        cw_config=cw,
    )
    rng = np.random.default_rng(0)
    batches = [
        {
            "points": rng.normal(size=(8, 32, 3)).astype(np.float32),
            "label": rng.integers(0, 4, 8),
            "valid": np.arange(8) < (8 if i == 0 else 5),
        }
        for i in range(2)
    ]
    per_seed = robustness.run_unit(step_fn, batches, [0.05, 0.2], seeds=2, seed=0)
    ragged = lambda k, v: (
        [list(map(float, x)) for x in v] if k == "l2_reached" else np.asarray(v).tolist()
    )
    return [{k: ragged(k, v) for k, v in s.items()} for s in per_seed]


def test_sharded_over_four_devices_matches_one():
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=4",
        PYTHONPATH=python_path(),
    )
    proc = subprocess.run(
        [sys.executable, "-c", SHARDED_SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    sharded = json.loads(
        next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")).split(" ", 1)[1]
    )
    assert sharded["devices"] == 4 and jax.device_count() == 1
    for a, b in zip(sharded["result"], toy_unit()):
        assert a.keys() == b.keys()
        for key in a:
            # one list per epsilon, of the clouds the attack judged successful
            if key == "non_finite":  # counts of clouds, all zero
                assert a[key] == b[key] and not a[key]["clean"] + a[key]["adversarial"]
            elif key == "l2_reached":
                assert [len(x) for x in a[key]] == [len(x) for x in b[key]]
                for x, y in zip(a[key], b[key]):
                    np.testing.assert_allclose(x, y, rtol=1e-6, err_msg=key)
            else:
                np.testing.assert_allclose(a[key], b[key], rtol=1e-6, err_msg=key)
