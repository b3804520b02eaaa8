"""The house plan (docs/design.md), checked: jobs named after their configs, libraries that never
import jobs, no import cycles, short functions, every job refusing keys it does not read, one table
of models."""

import ast
import importlib
import pathlib

import pytest

import main
from ddjax import errors
from ddjax.models import peers, registry

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    p.stem for p in (ROOT / "configs").glob("*.py") if p.stem not in ("__init__", "common")
)
MAX_FUNCTION_LINES = 80


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def ddjax_imports() -> dict[str, set[str]]:
    """{module: the ddjax modules it imports, anywhere in its body}, resolved to modules (`from
    ddjax import x` names the module ddjax.x where that is one)."""
    graph = {}
    for path in sorted((ROOT / "ddjax").rglob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ddjax"):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}"
                    is_module = (ROOT / (full.replace(".", "/") + ".py")).is_file() or (
                        ROOT / full.replace(".", "/")
                    ).is_dir()
                    deps.add(full if is_module else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("ddjax")}
        graph[module_name(path)] = deps - {module_name(path)}
    return graph


def test_no_import_cycles_among_ddjax_modules():
    graph = ddjax_imports()
    state = {}  # module -> 1 visiting, 2 done

    def visit(module, stack):
        state[module] = 1
        for dep in sorted(graph.get(module, ())):
            if dep not in graph:
                continue  # a package's __init__ or a name: not a module of the graph
            assert state.get(dep) != 1, "import cycle: " + " -> ".join(stack + [module, dep])
            if dep not in state:
                visit(dep, stack + [module])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [])


def test_only_jobs_import_jobs():
    offenders = {
        m: sorted(d for d in deps if d.startswith("ddjax.jobs"))
        for m, deps in ddjax_imports().items()
        if not m.startswith("ddjax.jobs")
    }
    assert {m: d for m, d in offenders.items() if d} == {}


def test_every_config_has_its_job_module_and_main_dispatches_to_it():
    assert sorted(main.JOBS) == CONFIGS
    for name in CONFIGS:
        config = importlib.import_module(f"configs.{name}").get_config()
        assert config.job == name, f"configs/{name}.py makes a config of job {config.job!r}"
        job = importlib.import_module(f"ddjax.jobs.{name}")
        assert main.JOBS[name] is job and callable(job.check_config) and callable(job.run)


def test_no_function_in_ddjax_is_longer_than_80_lines():
    long = []
    for path in sorted((ROOT / "ddjax").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(
                        f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)"
                    )
    assert long == []


# Each config file's arguments whose config has keys the default lacks (the smoke variants).
ARGS = {"zeroshot": ["smoke"], "attack": ["smoke"], "certify": ["smoke"], "pretrain": ["smoke"],
        "kernels_demo": ["smoke"], "teacher_cache": ["smoke"], "visualize": ["smoke"]}  # fmt: skip


@pytest.mark.parametrize("name", CONFIGS)
def test_every_job_reads_every_key_of_its_config_and_refuses_others(name):
    job = importlib.import_module(f"ddjax.jobs.{name}")
    module = importlib.import_module(f"configs.{name}")
    for arg in [None, *ARGS.get(name, [])]:
        config = module.get_config(arg) if arg else module.get_config()
        unread = [k for k in config.keys() if k not in job.KEYS[""]]
        for section, keys in job.KEYS.items():
            if section:
                unread += [f"{section}.{k}" for k in config[section].keys() if k not in keys]
        assert unread == [], f"configs/{name}.py:{arg} has keys {name} does not read"
        config.unlock()
        config.misspelt_key = 1
        with pytest.raises(errors.ConfigError, match=r"nothing reads the keys \['misspelt_key'\]"):
            job.check_config(config, "/tmp/unused-workdir")


def test_the_model_table_covers_every_port():
    assert set(registry.KINDS) == {"dual_denoising", *peers.MODELS}
