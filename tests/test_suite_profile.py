"""benchmarks/test_profile.py and tests/compile_log: compilations are counted per test in a child
process, and the table adds a run's junit times and compile logs up per test file."""

import json
import os
import subprocess
import sys

from benchmarks import test_profile
from tests.conftest import COMPILE_LOG, ROOT

CHILD = """
import jax, numpy as np
double = jax.jit(lambda x: x * 2)
x = np.ones(3, np.float32)
double(x), jax.jit(lambda x: x + 1)(x), double(x)  # two programs, the first called twice
"""


def test_a_child_process_counts_its_compilations_under_the_current_test(tmp_path):
    env = dict(
        os.environ,
        DDJAX_COMPILE_LOG=str(tmp_path),
        PYTHONPATH=str(COMPILE_LOG),
        PYTEST_CURRENT_TEST="tests/test_x.py::test_y[a b] (call)",
        JAX_PLATFORMS="cpu",
    )
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    subprocess.run([sys.executable, "-c", CHILD], env=env, check=True, timeout=120, cwd=ROOT)
    (log,) = tmp_path.glob("*.json")
    counts = json.loads(log.read_text())
    assert list(counts) == ["tests/test_x.py::test_y[a b]"]
    entry = counts["tests/test_x.py::test_y[a b]"]
    assert entry["compiles"] == 2 and entry["compile_s"] > 0 and entry["hits"] == 0


def test_the_table_adds_up_per_file(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.test_a" name="test_1" time="2.5"/>'
        '<testcase classname="tests.test_a.TestGroup" name="test_2" time="1.5"/>'
        '<testcase classname="tests.test_b" name="test_3" time="4.0"/>'
        "</testsuite></testsuites>"
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    entry = {"compiles": 3, "compile_s": 1.0, "hits": 1}
    (logs / "1.json").write_text(json.dumps({"tests/test_a.py::test_1": entry}))
    (logs / "2.json").write_text(
        json.dumps({"tests/test_a.py::test_2": entry, "(outside a test)": entry})
    )
    profile = test_profile.summarize(junit, logs, wall=5.0)
    files = profile["files"]
    assert files["tests/test_a.py"] == {
        "tests": 2,
        "seconds": 4.0,
        "compiles": 6,
        "compile_s": 2.0,
        "hits": 2,
    }
    assert files["tests/test_b.py"]["tests"] == 1 and files["tests/test_b.py"]["compiles"] == 0
    assert files["(outside a test)"]["compiles"] == 3
    table = test_profile.table(profile)
    assert table.splitlines()[0] == "wall 5 s"
    assert "| tests/test_b.py | 1 | 4 | 0 | 0 | 0 |" in table
    assert "| total | 3 | 8 | 9 | 3 | 3 |" in table
