"""main.py: every flag and config error is one line `error: ...` naming the key or file, exit status
2, no traceback (each case is a fresh process: absl parses flags once per process)."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "args, expected",
    [
        (
            ["--config=configs/pretrain.py:smoke", "--config.nonexistent=1"],
            "unknown config key (config.nonexistent): configs/pretrain.py:smoke has no such key",
        ),
        (
            ["--config=configs/pretrain.py:smoke", "--config.model.widht=64"],
            "did you mean config.model.width?",
        ),
        (
            ["--config=configs/attack.py:smoke", "--config.sucess_draws=2"],
            "did you mean config.success_draws?",
        ),
        (
            ["--config=configs/pretrain.py:smoke,s=abc"],
            "config argument 's' must be float, got 'abc'",
        ),
        (
            ["--config=configs/pretrain.py:smoke,cached=maybe"],
            "config argument 'cached' is a boolean",
        ),
        (
            ["--config=configs/pretrain.py:smoke", "--config.lr=abc"],
            "--config.lr=abc: could not convert",
        ),
        (
            ["--config=configs/nothere.py"],
            "cannot load the config file (--config=configs/nothere.py)",
        ),
    ],
)
def test_flag_and_config_errors_are_one_line(tmp_path, args, expected):
    env = dict(os.environ, JAX_PLATFORMS="cpu", HF_HUB_OFFLINE="1")
    proc = subprocess.run(
        [sys.executable, "main.py", *args, f"--workdir={tmp_path / 'run'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[
        -2000:
    ]
    assert expected in lines[0] and "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()  # refused before any work
