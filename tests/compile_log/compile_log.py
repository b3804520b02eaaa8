"""Counts XLA compilations per test, for docs/development.md's table of the suite's costs.

With $DDJAX_COMPILE_LOG=DIR set (benchmarks/test_profile.py sets it), every Python of the test run
(pytest's workers, and the jobs they start: this folder is on their PYTHONPATH, and its
sitecustomize.py calls `install`) counts, per test ($PYTEST_CURRENT_TEST, which pytest sets and
child processes inherit), the programs XLA compiled (JAX's backend-compile event: a persistent-cache
miss or an uncached program), their seconds, and the persistent-cache hits; at exit it writes them
to DIR/<pid>.json. Without the variable nothing is installed.
"""

import atexit
import collections
import json
import os
import pathlib

ENV = "DDJAX_COMPILE_LOG"
COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # jax._src.dispatch
HIT_EVENT = "/jax/compilation_cache/cache_hits"  # jax._src.compiler


def _test() -> str:
    # "tests/test_x.py::test_y[param] (call)" -> "tests/test_x.py::test_y[param]"
    return os.environ.get("PYTEST_CURRENT_TEST", "(outside a test)").rsplit(" (", 1)[0]


def install() -> None:
    directory = os.environ.get(ENV)
    if not directory:
        return
    import jax.monitoring

    counts = collections.defaultdict(lambda: {"compiles": 0, "compile_s": 0.0, "hits": 0})

    def on_duration(event, seconds, **kwargs):
        if event == COMPILE_EVENT:
            entry = counts[_test()]
            entry["compiles"] += 1
            entry["compile_s"] += seconds

    def on_event(event, **kwargs):
        if event == HIT_EVENT:
            counts[_test()]["hits"] += 1

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)

    def write():
        if counts:
            path = pathlib.Path(directory) / f"{os.getpid()}.json"
            path.write_text(json.dumps(counts))

    atexit.register(write)
