"""On the PYTHONPATH of a profiled test run's child processes: compile_log.install()."""

try:
    import compile_log

    compile_log.install()
except ImportError:  # a Python without JAX (the torch environment of benchmarks/peers.py)
    pass
