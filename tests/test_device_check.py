"""benchmarks/device_check.py's machinery: the budget, time limits, the report that is always
written, parsing.

The whole command runs in CI as `make device-check BACKEND=cpu` inside the GPU image's twin (make
test-gpu-image); these tests cover what that run cannot show: skipping for want of time, killing an
item at its limit, and the environment probe's verdict.
"""

import json
import os
import pathlib
import subprocess
import sys
import time

import pytest

from benchmarks import device_check
from tests.conftest import env_without_coverage

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_check(tmp_path, *args, timeout=300):
    proc = subprocess.run(
        [
            sys.executable,
            "benchmarks/device_check.py",
            f"--out={tmp_path}",
            "--backend=cpu",
            "--wheels=",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, JAX_PLATFORMS="cpu"),
    )
    report = json.loads((tmp_path / "device_check.json").read_text())
    return proc, report


def test_items_that_do_not_fit_are_skipped_and_the_report_is_still_written(tmp_path):
    proc, report = run_check(tmp_path, "--budget=1")
    assert proc.returncode == 1
    names = [c["name"] for c in report["checks"]]
    assert names == [item.name for item in device_check.plan("tiny", sys.executable)]
    assert all(c["pass"] is None and c["note"].startswith("skipped: ") for c in report["checks"])
    assert report["passed"] is False and report["sizes"] == "tiny" and report["budget_s"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["device_check.json", "device_check.log"]
    assert f"0 of {len(names)} checks passed" in proc.stdout


def test_environment_probe_names_versions_devices_and_kernels(tmp_path):
    proc, report = run_check(tmp_path, "--only=environment", "--budget=120")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert report["checks"] == [
        {"name": "environment", "pass": True, "seconds": report["checks"][0]["seconds"]}
    ]
    assert report["device"]["platform"] == "cpu" and report["device"]["count"] >= 1
    assert report["device"]["describe"].endswith("kernels fps=xla, knn=xla")
    assert report["versions"]["jax"] and report["versions"]["transformers"].startswith("4.57.")
    probe = report["items"]["environment"]["result"]
    assert all(v == "ok" for v in probe["imports"].values()), probe["imports"]


def test_probe_fails_when_the_backend_is_not_the_one_asked_for():
    proc = subprocess.run(
        [sys.executable, "benchmarks/device_check.py", "--probe"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAX_PLATFORMS="cpu", DDJAX_DEVICE_BACKEND="gpu"),
    )
    result = json.loads(proc.stdout)
    assert (
        result["ok"] is False and "asked for backend 'gpu', JAX runs on 'cpu'" in result["problem"]
    )


def test_an_item_over_its_time_limit_is_killed_with_its_children(tmp_path):
    log = device_check.Log(tmp_path / "log")
    child = (
        "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; "
        "time.sleep(60)']); "
        "print('started', flush=True); time.sleep(60)"
    )
    start = time.monotonic()
    # a limit of 6 s: a child Python needs up to a few seconds to start on 2 busy cores (-S: without
    # the environment's .pth files)
    code, stdout, seconds = device_check.run_command(
        [sys.executable, "-S", "-c", child], env_without_coverage(), 6, log
    )
    assert code is None and stdout.startswith("started") and 5.5 < seconds < 30
    assert time.monotonic() - start < 30
    assert "killed: over its time limit" in (tmp_path / "log").read_text()


def test_parse_json_and_junit(tmp_path):
    assert device_check.parse_json('warming up\n{\n  "a": 1\n}\n') == {"a": 1}
    assert device_check.parse_json("benchmark error: boom\n") is None
    lines = '{"measurement": {"x": 1}}\nnoise\n{"measurement": {"x": 2}}\n{"results": [1, 2]}\n'
    # the summary, not a measurement line
    assert device_check.parse_json(lines) == {"results": [1, 2]}
    assert device_check.parse_measurements(lines) == [{"x": 1}, {"x": 2}]
    assert device_check.parse_pytest_lines(
        "tests/a.py::t1 PASSED  [ 50%]\ntests/a.py::t2 FAILED\n"
    ) == {"passed": ["tests/a.py::t1"], "failed": ["tests/a.py::t2"], "skipped": []}
    junit = tmp_path / "r.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_fps" name="test_a[xla]"/>'
        '<testcase classname="tests.test_fps" name="test_b"><failure message="assert 1 == '
        '2"/></testcase>'
        '<testcase classname="tests.test_knn" name="test_c"><skipped message="no GPU"/></testcase>'
        "</testsuite></testsuites>"
    )
    result = device_check.parse_junit(junit)
    assert result["passed"] == 1
    assert result["failed"] == [{"test": "tests/test_fps.py::test_b", "message": "assert 1 == 2"}]
    assert result["skipped"] == [{"test": "tests/test_knn.py::test_c", "reason": "no GPU"}]


def test_figures_flatten_the_benchmark_results():
    items = {
        "bench_train": {
            "measurements": [
                {
                    "mode": "online",
                    "dtype": "float32",
                    "batch": 128,
                    "step_s": 0.2,
                    "samples_per_s": 640.0,
                    "mfu": 0.31,
                    "device_peak_bytes": 5,
                    "xla_peak_bytes": 4,
                    "paper_run_hours": 6.8,
                    "compile_s": 12.5,
                }
            ]
        },
        "bench_attacks": {
            "measurements": [{"mode": "eot", "shapes_per_s": 3.0, "seconds_50_steps": 10.0}]
        },
        "bench_kernels": {
            "measurements": [
                {
                    "op": "group",
                    "implementation": "fps=pallas,knn=xla",
                    "B": 32,
                    "N": 1024,
                    "ms": 1.5,
                    "default": True,
                }
            ]
        },
        "trainer_e2e": {
            "result": {"samples_per_sec_median": 500.0, "zeroshot_top1": 0.2, "first_step_s": 41.0}
        },
    }
    f = device_check.figures(items)
    assert (
        f["train_online_float32_b128_paper_run_hours"] == 6.8
        and f["train_online_float32_b128_mfu"] == 0.31
    )
    assert (
        f["train_online_float32_b128_compile_s"] == 12.5 and f["group_default_ms_B32_N1024"] == 1.5
    )
    assert (
        f["attack_pgd50_eot_shapes_per_s"] == 3.0 and f["trainer_samples_per_sec_median"] == 500.0
    )
    assert f["trainer_first_step_s"] == 41.0


def test_an_item_killed_at_its_limit_keeps_its_measurements(tmp_path):
    # A benchmark that measures twice, then hangs: killed at its limit, the item keeps both lines
    # (partial), and the figures come from them.
    script = (
        "import json, time\n"
        "for n in (1, 8):\n"
        "    print(json.dumps({'measurement': {'t': 0, 'num_paths': n, 'shapes_per_s': 10.0 * "
        "n}}), flush=True)\n"
        "time.sleep(60)\n"
    )
    # -S and 8 s: time for the child to start on 2 busy cores, without the environment's .pth files
    item = device_check.Item(
        "bench_zeroshot", "c", 1, lambda c, s: 60, [sys.executable, "-S", "-c", script]
    )
    result = device_check.run_item(
        item,
        dict(os.environ),
        8,
        device_check.Log(tmp_path / "log"),
        "tiny",
        sys.executable,
        tmp_path,
    )
    assert result["pass"] is False and result["partial"] is True and result["exit"] is None
    assert [r["num_paths"] for r in result["measurements"]] == [1, 8]
    assert result["note"] == "killed at its time limit of 8 s after 2 measurements"
    f = device_check.figures({"bench_zeroshot": result})
    assert f["zeroshot_shapes_per_s_t0_N1"] == 10.0 and f["zeroshot_shapes_per_s_t0_N8"] == 80.0


def test_a_too_small_item_limit_is_reported_with_how_far_it_got(tmp_path):
    # The real command with a limit no benchmark can meet: the item is killed, the report says after
    # how many measurements, the plan shows the limit used, and the run fails.
    proc, report = run_check(
        tmp_path, "--only=bench_kernels", "--item-limit=bench_kernels=0.5", "--budget=120"
    )
    assert proc.returncode == 1
    item = report["items"]["bench_kernels"]
    # How far it got depends on the machine (a fast one finishes a first row in 0.5 s): the note
    # must count exactly the rows kept, and each kept row is a whole measurement.
    got = item["measurements"]
    assert item["pass"] is False and item["exit"] is None and item["partial"] is (len(got) > 0)
    plural = "s" * (len(got) != 1)
    assert item["note"] == f"killed at its time limit of 0.5 s after {len(got)} measurement{plural}"
    assert all(row["ms"] > 0 and row["op"] in ("fps", "knn", "group") for row in got)
    assert report["plan"][0]["name"] == "bench_kernels" and report["plan"][0]["limit_s"] == 0.5
    assert [(c["name"], c["pass"], c["note"]) for c in report["checks"]] == [
        ("bench_kernels", False, item["note"])
    ]


def test_item_limits_follow_the_device_speed_bench_train_measured():
    items = device_check.plan("full", "python3")
    train = next(i for i in items if i.name == "trainer_e2e")
    assumed = device_check.device_speed({})
    assert assumed == (device_check.ASSUMED["compile_s"], device_check.ASSUMED["step_s"], "assumed")
    measured = device_check.device_speed(
        {
            "bench_train": {
                "measurements": [
                    {"mode": "cached", "dtype": "float32", "step_s": 0.1, "compile_s": 8.0},
                    {"mode": "online", "dtype": "bfloat16", "step_s": 0.3, "compile_s": 11.0},
                ]
            }
        }
    )
    assert measured == (11.0, 0.1, "measured by bench_train")
    assert train.cap_s(*measured[:2]) < train.cap_s(*assumed[:2])
    assert train.cap_s(*measured[:2]) == 1.5 * (
        3 * device_check.START_S + 40 + 1.6 * 11.0 + 40 * 2 * 0.1 + 15
    )


@pytest.mark.parametrize("sizes", ["full", "tiny"])
def test_the_plans_follow_the_issue_order(sizes, tmp_path):
    items = device_check.plan(sizes, "python3")
    # environment, paper figures, more, tests
    assert [i.stage for i in items] == sorted(i.stage for i in items)
    names = [i.name for i in items]
    assert names == [
        "environment",
        "bench_train",
        "trainer_e2e",
        "bench_zeroshot",
        "bench_attacks",
        "bench_attacks_uni3d",
        "bench_kernels",
        "bench_compile",
        "portability",
        "kernel_tests",
        "model_tests",
    ]
    commands, resume = device_check.e2e_commands(sizes, "python3", tmp_path)
    assert [name for name, _ in commands] == ["first_half", "resume", "zeroshot_job"]
    assert f"--config.total_steps={resume}" in commands[0][1]
    train = next(i for i in items if i.name == "bench_train").argv
    # one process for all four
    assert "--dtypes=float32,bfloat16" in train and "--modes=cached,online" in train
    if sizes == "full":
        # base, the paper's
        assert "--batches=128" in train and not any(a.startswith("--variant") for a in train)
        assert "--config.batch_size=128" in commands[0][1] and "variant=base" in commands[0][1][2]
        kernel_env = next(i for i in items if i.name == "kernel_tests").env["DDJAX_KERNEL_SIZES"]
        assert kernel_env == "32x1024,128x1024,32x8192,128x8192"
        # The expected costs of a device as fast as assumed fit the budget's 8 minutes only with a
        # real GPU; the arithmetic is what the report's plan shows: every limit is 1.5 x the
        # expected cost.
        c, s, _ = device_check.device_speed({})
        assert all(i.cap_s(c, s) == 1.5 * i.cost(c, s) for i in items)


def test_the_trainer_item_runs_the_base_model_on_the_smoke_data():
    from configs import pretrain

    config = pretrain.get_config("smoke,variant=base")
    assert (
        config.model.width,
        config.model.depth,
        config.model.num_groups,
        config.model.group_size,
    ) == (384, 12, 64, 32)
    assert (
        config.model.teacher_dim == config.tiny_teacher.projection_dim
        and config.tiny_teacher.enabled
    )
    assert config.num_points == config.eval.npoints == 1024 and config.dataset == "synthetic_shapes"
    assert pretrain.get_config("variant=small").model.width == 256


@pytest.mark.parametrize(
    "platforms, verdict, want",
    [("cuda", True, "cuda,cpu"), ("tpu", False, "tpu,cpu"), ("cpu", True, "cpu")],
)
def test_the_portability_item_gets_the_cpu_beside_the_device(tmp_path, platforms, verdict, want):
    # A benchmark's summary line decides its item (`pass`), and the portability item runs with the
    # CPU backend beside the device's, where its weights are made.
    script = (
        "import json, os\n"
        f"print(json.dumps({{'platforms': os.environ['JAX_PLATFORMS'], 'pass': {verdict}, "
        "'comparison': {'exact': False}, 'precision': 'tf32'}))\n"
    )
    item = device_check.Item(
        "portability", "c", 1, lambda c, s: 60, [sys.executable, "-S", "-c", script], with_cpu=True
    )
    result = device_check.run_item(
        item,
        dict(os.environ, JAX_PLATFORMS=platforms),
        30,
        device_check.Log(tmp_path / "log"),
        "tiny",
        sys.executable,
        tmp_path,
    )
    assert result["result"]["platforms"] == want
    assert result["pass"] is verdict
    assert result["note"] == ("tf32 tolerance met" if verdict else "tf32 tolerance NOT met")
    for sizes in ("full", "tiny"):  # the real item, in both plans
        plan = device_check.plan(sizes, "python3")
        assert next(i for i in plan if i.name == "portability").with_cpu
