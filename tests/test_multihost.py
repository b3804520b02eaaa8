"""Several JAX processes for real: 2 processes x 2 CPU devices on localhost (gloo), against 1
process.

Pretraining (with a kill of both processes and a resume) matches 1 process x 4 devices; the
zero-shot and attack jobs give exactly one process's results. The commands are the README's
("Several hosts") with the tiny test sizes appended. Every launch has a timeout, and both processes
are killed when either fails.
"""

import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import ROOT, TEST_TEACHER, python_path

pytestmark = pytest.mark.xdist_group("multihost")  # one worker: the module's fixture is shared

# The README's two-terminal command (the smoke run on two CPU processes), one line per process.
README_COMMAND = (
    "JAX_NUM_CPU_DEVICES=2 python main.py --config=configs/pretrain.py:smoke "
    "--workdir=runs/smoke_2p "
    "--coordinator_address=localhost:12355 --num_processes=2 --process_id={i}"
)
TINY = [
    "--config.dataset=synthetic_shapes/tiny",
    "--config.log_every=1",
    # process 0 trains the run's tiny teacher (as the tests' own) while process 1 waits
    *(f"--config.tiny_teacher.{k}={v}" for k, v in TEST_TEACHER.items()),
    "--config.model.width=32",
    "--config.model.depth=2",
    "--config.model.num_heads=2",
    "--config.model.num_groups=16",
    "--config.model.group_size=8",
    "--config.eval.dataset=",
    "--config.total_steps=16",
    # 4 saves a run, not 8: each took 2 to 8 s of 2 busy cores (orbax, 2 processes)
    "--config.checkpoint_every=4",
]
TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def env(devices: int, **extra) -> dict:
    return dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        HF_HUB_OFFLINE="1",
        JAX_NUM_CPU_DEVICES=str(devices),
        PYTHONPATH=python_path(),
        **extra,
    )


def readme_argv(i: int, port: int, workdir, extra=()) -> list[str]:
    """The README's command for process i, with another port and workdir and `extra`
    flags appended."""
    words = README_COMMAND.format(i=i).split()
    assert words[0].startswith("JAX_NUM_CPU_DEVICES=") and words[1:3] == ["python", "main.py"]
    words = [w.replace("localhost:12355", f"localhost:{port}") for w in words[3:]]
    words = [f"--workdir={workdir}" if w.startswith("--workdir=") else w for w in words]
    return [sys.executable, str(ROOT / "main.py"), *words, *extra]


def spawn(argv_of, logs, **extra_env) -> list[subprocess.Popen]:
    """Starts processes 0 and 1 (`argv_of(i, port)`), each with 2 CPU devices, output to
    a log file."""
    port = free_port()
    procs = []
    for i in range(2):
        log = logs / f"process{i}_{time.monotonic_ns()}.log"
        with open(log, "w") as f:
            procs.append(
                subprocess.Popen(
                    argv_of(i, port),
                    cwd=ROOT,
                    env=env(2, **extra_env),
                    stdout=f,
                    stderr=subprocess.STDOUT,
                )
            )
        procs[-1].log = log
    return procs


def start_two(workdir, extra, logs) -> list[subprocess.Popen]:
    """The README's command in two processes."""
    return spawn(lambda i, port: readme_argv(i, port, workdir, extra), logs)


def start_job(argv, workdir, logs) -> list[subprocess.Popen]:
    """Another job's command in two processes."""
    return spawn(
        lambda i, port: [
            sys.executable,
            str(ROOT / "main.py"),
            *argv,
            f"--workdir={workdir}",
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
        ],
        logs,
    )


def kill_all(procs) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
    for p in procs:
        p.wait()


def wait_two(procs, timeout=TIMEOUT_S) -> list[str]:
    """Waits for both; on a failure or the timeout kills both and fails with their output."""
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break
            time.sleep(0.2)
    finally:
        kill_all(procs)
    outputs = [pathlib.Path(p.log).read_text() for p in procs]
    if any(p.returncode != 0 for p in procs):
        pytest.fail("a process failed or timed out:\n" + "\n---\n".join(o[-3000:] for o in outputs))
    return outputs


def run_one(argv, devices: int, timeout=TIMEOUT_S) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "main.py"), *argv],
        cwd=ROOT,
        env=env(devices),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def metrics(workdir) -> list[dict]:
    return [
        json.loads(line)
        for line in (pathlib.Path(workdir) / "metrics.jsonl").read_text().splitlines()
    ]


@pytest.fixture(scope="module")
def runs(synthetic_tiny, tmp_path_factory):
    """The README's 2-process smoke run at tiny sizes, killed (both processes) after its checkpoint
    4 and run again to step 16; then the same run in 1 process x 4 devices with the 2-process run's
    teacher."""
    from tests.test_train import data_root

    root = tmp_path_factory.mktemp("multihost")
    two, one = root / "two", root / "one"
    extra = TINY + [f"--config.data_dir={data_root(synthetic_tiny)}"]
    procs = start_two(two, extra, root)
    deadline = time.time() + TIMEOUT_S
    try:
        while time.time() < deadline and all(p.poll() is None for p in procs):
            names = os.listdir(two / "checkpoints") if (two / "checkpoints").is_dir() else []
            if any(d.isdigit() and int(d) >= 4 for d in names):
                break
            time.sleep(0.1)
        assert all(p.poll() is None for p in procs), (
            "the run ended before it could be killed:\n"
            + "\n".join(pathlib.Path(p.log).read_text()[-2000:] for p in procs)
        )
    finally:
        kill_all(procs)  # SIGKILL: no clean-up of any kind
    killed_at = max(r["step"] for r in metrics(two))
    outputs = wait_two(start_two(two, extra, root))
    one.mkdir()
    # the same frozen teacher (trained by process 0)
    shutil.copytree(two / "teacher", one / "teacher")
    run_one(["--config=configs/pretrain.py:smoke", f"--workdir={one}", *extra], devices=4)
    return {
        "two": two,
        "one": one,
        "killed_at": killed_at,
        "outputs": outputs,
        "root": root,
        "data_dir": data_root(synthetic_tiny),
    }


def test_the_module_runs_on_one_worker(request):
    """make test's `--dist loadgroup` keeps this module's tests on one worker, so its minutes-long
    fixture runs once: xdist marks the group in the test's id (it did not under pytest 9.2)."""
    if not (os.environ.get("PYTEST_XDIST_WORKER") and request.config.getvalue("loadgroup")):
        pytest.skip("checks the grouping of pytest-xdist's --dist loadgroup (make test)")
    assert request.node.nodeid.endswith("@multihost"), request.node.nodeid


def test_readme_has_the_command():
    readme = (ROOT / "docs" / "several-hosts.md").read_text()
    for i in range(2):
        assert README_COMMAND.format(i=i) in readme


def test_pretraining_matches_one_process_after_a_kill(runs):
    import jax

    from tests.test_train import _params

    assert 4 <= runs["killed_at"] < 16
    out0, out1 = runs["outputs"]
    assert "resumed from" in out0 and "(2 processes)" in out0
    # process 0 reports alone
    assert "step 16/16" in out0 and "step " not in out1 and "resumed" not in out1
    two, one = metrics(runs["two"]), metrics(runs["one"])
    # one line per step: the replayed ones replaced
    assert [r["step"] for r in two] == list(range(1, 17))
    # the same global batches; sums across processes add in another order, and
    for a, b in zip(two, one):
        # Adam makes those last-bit differences grow a little with every step
        rtol = 2e-5 if a["step"] <= 4 else 3e-3
        for key in (
            "loss",
            "loss_rec",
            "loss_image",
            "loss_text",
            "chamfer",
            "grad_norm",
            "param_norm",
        ):
            np.testing.assert_allclose(a[key], b[key], rtol=rtol, err_msg=f"step {a['step']} {key}")
        assert a["lr"] == b["lr"]
    # Parameters: Adam moves a coordinate by about lr per step whatever the gradient's size, so
    # where the gradient is near zero its last-bit difference may flip a step's sign: at most 2 x
    # the summed lr apart (measured 0.8 of the summed lr), and 1 % apart as a whole (measured 0.19
    # %).
    pa, pb = _params(runs["two"], 16)["params"], _params(runs["one"], 16)["params"]
    la, lb = (
        [np.asarray(x) for x in jax.tree_util.tree_leaves(pa)],
        [np.asarray(x) for x in jax.tree_util.tree_leaves(pb)],
    )
    bound = 2 * sum(r["lr"] for r in one)
    assert max(float(np.abs(x - y).max()) for x, y in zip(la, lb)) <= bound
    distance = np.sqrt(sum(float(((x - y) ** 2).sum()) for x, y in zip(la, lb)))
    assert distance <= 1e-2 * np.sqrt(sum(float((y**2).sum()) for y in lb))
    # One writer: one config, one teacher; the checkpoint holds each process's data-iterator state.
    data = runs["two"] / "checkpoints" / "16" / "data"
    assert sorted(f for f in os.listdir(data) if f.startswith("process_")) == [
        "process_0-of-2.json",
        "process_1-of-2.json",
    ]
    assert not [p for p in runs["two"].rglob("*.tmp")]


def test_resuming_with_another_process_count_is_refused(runs, capsys):
    import main

    argv = [
        "--config=configs/pretrain.py:smoke",
        f"--workdir={runs['two']}",
        *TINY,
        f"--config.data_dir={runs['data_dir']}",
    ]
    assert main.run_command(argv) == 1  # this test's 1 process, on the 2-process run
    err = capsys.readouterr().err
    assert (
        "checkpoints/16): written by 2 processes, resumed by 1" in err
        and "--num_processes=2" in err
    )


def test_zeroshot_and_attack_equal_one_process(runs):
    import main

    common = [
        f"--config.checkpoint={runs['two']}",
        f"--config.data_dir={runs['data_dir']}",
        "--config.dataset=synthetic_shapes/tiny",
        "--config.npoints=256",
        "--config.point_all=300",
    ]
    # zero-shot: 24 shapes in 2 batches, both in process 0 (process 1 computes batch 0 for the
    # shapes only); attack: 2 batches x 2 seeds, one pair on each of the 4 devices.
    zeroshot = ["--config=configs/zeroshot.py:smoke", *common, "--config.batch_size=12"]
    attack = [
        "--config=configs/attack.py:smoke",
        *common,
        "--config.batch_size=4",
        "--config.max_shapes=8",
        "--config.attacks=pgd",
        "--config.modes=paper",
        "--config.steps=2",
        "--config.curve_every=1",
        "--config.eps=0.05",
        "--config.seeds=2",
        "--config.settings=1:0",
    ]
    for argv, name in ((zeroshot, "zeroshot.json"), (attack, "attack.json")):
        two, one = runs["root"] / f"two_{name}", runs["root"] / f"one_{name}"
        wait_two(start_job(argv, two, runs["root"]))
        assert main.run_command([*argv, f"--workdir={one}"]) == 0  # 1 process, this test's 1 device
        a, b = json.loads((two / name).read_text()), json.loads((one / name).read_text())
        assert {k: v for k, v in a.items() if k != "checkpoint"} == {
            k: v for k, v in b.items() if k != "checkpoint"
        }
        assert sorted(os.listdir(two)) == sorted(os.listdir(one))  # the same files, written once


def test_other_jobs_run_in_process_zero(tmp_path):
    # prepare (like teacher_cache, classify, certify, convert, visualize) runs in process 0 alone;
    # process 1 waits for it at a barrier and exits 0 without output of its own.
    argv = [
        "--config=configs/prepare.py:synthetic_shapes/tiny",
        f"--config.data_dir={tmp_path / 'tfds'}",
    ]
    procs = spawn(
        lambda i, port: [
            sys.executable,
            str(ROOT / "main.py"),
            *argv,
            f"--coordinator_address=localhost:{port}",
            "--num_processes=2",
            f"--process_id={i}",
        ],
        tmp_path,
    )
    out0, out1 = wait_two(procs, timeout=120)
    assert "prepared" in out0 and "(2 processes)" in out0
    # process 1 prints only whom it waits for at start-up (and gloo's own lines)
    waiting = "process 1 of 2: waiting for all processes to join at localhost:"
    assert not [
        line
        for line in out1.splitlines()
        if line.strip() and not line.startswith(("[Gloo]", waiting))
    ], out1
    assert (tmp_path / "tfds" / "synthetic_shapes" / "tiny" / "1.0.0").is_dir()


@pytest.mark.parametrize("process_id", [0, 1])
def test_a_missing_partner_ends_in_one_line_within_the_startup_timeout(process_id, tmp_path):
    # process 0 waits for a partner that never starts; process 1 for a coordinator that is absent.
    # Each says whom it waits for, then gives up with one line and exit 1 (JAX's own timeout would
    # abort the process with a stack dump).
    port = free_port()
    argv = [
        sys.executable,
        "main.py",
        "--config=configs/kernels_demo.py:smoke",
        f"--workdir={tmp_path / 'run'}",
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        f"--process_id={process_id}",
        "--startup_timeout=3",
        "--nocompilation_cache",
    ]
    start = time.monotonic()
    out = subprocess.run(argv, cwd=ROOT, env=env(1), capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - start
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 1, out.stderr[-3000:]
    assert lines == [
        f"process {process_id} of 2: waiting for all processes to join at localhost:{port} "
        "(up to 3 s, --startup_timeout)",
        f"error: cannot start the processes (--startup_timeout): not all 2 processes joined "
        f"within 3 s at localhost:{port}; start every process with the same "
        "--coordinator_address and --num_processes (each its own --process_id), or wait longer "
        "with --startup_timeout=SECONDS",
    ], lines
    assert elapsed < 60, elapsed
    assert not (tmp_path / "run").exists()


def test_a_stalled_partner_ends_the_run_in_one_line(synthetic_tiny, teacher_dir, tmp_path):
    """A process that stops answering in the middle of a run (SIGSTOP: swapped out, hung, a node
    paused): the other ends with one line naming the setting that waits longer, never a traceback.
    XLA's CPU collectives are given 5 s here (XLA_FLAGS), instead of their default."""
    from tests.test_train import data_root

    workdir = tmp_path / "run"
    extra = [
        *(a for a in TINY if not a.startswith(("--config.tiny_teacher.", "--config.total_steps"))),
        "--config.tiny_teacher.enabled=False",
        f"--config.teacher={teacher_dir}",
        f"--config.data_dir={data_root(synthetic_tiny)}",
        "--config.total_steps=1000",
    ]
    procs = spawn(
        lambda i, port: readme_argv(i, port, workdir, extra),
        tmp_path,
        XLA_FLAGS="--xla_cpu_collective_timeout_seconds=5",
    )
    try:
        deadline = time.time() + TIMEOUT_S
        while time.time() < deadline and all(p.poll() is None for p in procs):
            if (workdir / "metrics.jsonl").is_file() and len(metrics(workdir)) >= 2:
                break
            time.sleep(0.2)
        assert all(p.poll() is None for p in procs), pathlib.Path(procs[0].log).read_text()[-3000:]
        os.kill(procs[1].pid, signal.SIGSTOP)
        procs[0].wait(timeout=120)
    finally:
        if procs[1].poll() is None:
            os.kill(procs[1].pid, signal.SIGCONT)
        kill_all(procs)
    out0 = pathlib.Path(procs[0].log).read_text()
    assert procs[0].returncode == 1 and "Traceback" not in out0, out0[-3000:]
    last = out0.strip().splitlines()[-1]
    assert last.startswith("error: the processes lost each other (process 0 of 2): "), last
    assert last.endswith("XLA_FLAGS=--xla_cpu_collective_timeout_seconds=SECONDS allows"), last
