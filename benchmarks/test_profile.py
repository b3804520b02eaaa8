"""Where the test suite's time goes: seconds and XLA compilations per test file.

    python benchmarks/test_profile.py --out DIR [--python PY] -- PYTEST_ARGS...

runs `PY -m pytest PYTEST_ARGS --junitxml=DIR/junit.xml` (PY: this Python) with
$DDJAX_COMPILE_LOG=DIR/compile_log (tests/compile_log: every process of the run counts, per
test, the programs XLA compiled and the persistent-cache hits), then writes DIR/profile.json and
prints a
markdown table, a row per test file: tests, seconds (the sum of its tests' setup, call and teardown
on whichever worker ran them, so the column adds up to more than the wall time under xdist),
compilations, their seconds, and cache hits. The wall time is the first line. docs/development.md
("The suite's costs") keeps the tables it printed.
"""

import argparse
import collections
import json
import os
import pathlib
import subprocess
import sys
import time
import xml.etree.ElementTree as ET


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=pathlib.Path)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    pytest_args = [a for a in args.pytest_args if a != "--"]
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = args.out / "compile_log"
    log_dir.mkdir(exist_ok=True)
    for stale in log_dir.glob("*.json"):
        stale.unlink()
    junit = args.out / "junit.xml"
    env = dict(os.environ, DDJAX_COMPILE_LOG=str(log_dir.resolve()))
    began = time.monotonic()
    rc = subprocess.call(
        [args.python, "-m", "pytest", *pytest_args, f"--junitxml={junit}"], env=env
    )
    wall = time.monotonic() - began
    profile = summarize(junit, log_dir, wall)
    (args.out / "profile.json").write_text(json.dumps(profile, indent=1) + "\n")
    print(table(profile))
    return rc


def summarize(junit: pathlib.Path, log_dir: pathlib.Path, wall: float) -> dict:
    files = collections.defaultdict(
        lambda: {"tests": 0, "seconds": 0.0, "compiles": 0, "compile_s": 0.0, "hits": 0}
    )
    for case in ET.parse(junit).getroot().iter("testcase"):
        # classname "tests.test_x" (or "tests.test_x.TestClass") -> tests/test_x.py
        module = ".".join(p for p in case.get("classname", "").split(".") if not p[:1].isupper())
        entry = files[module.replace(".", "/") + ".py"]
        entry["tests"] += 1
        entry["seconds"] += float(case.get("time", 0.0))
    for path in log_dir.glob("*.json"):
        for test, counts in json.loads(path.read_text()).items():
            entry = files[test.split("::")[0] if "::" in test else "(outside a test)"]
            for key in ("compiles", "compile_s", "hits"):
                entry[key] += counts[key]
    return {"wall_s": round(wall, 1), "files": dict(sorted(files.items()))}


def table(profile: dict) -> str:
    rows = sorted(profile["files"].items(), key=lambda kv: -kv[1]["seconds"])
    total = {
        k: sum(e[k] for _, e in rows) for k in ("tests", "seconds", "compiles", "compile_s", "hits")
    }
    lines = [
        f"wall {profile['wall_s']:.0f} s",
        "",
        "| file | tests | seconds | compilations | compile s | cache hits |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, e in rows + [("total", total)]:
        lines.append(
            f"| {name} | {e['tests']} | {e['seconds']:.0f} | {e['compiles']} | "
            f"{e['compile_s']:.0f} | {e['hits']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
