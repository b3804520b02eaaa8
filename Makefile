# The two commands a newcomer types: `make run` (the main job on built-in data) and `make test`; `make lint`.
# Each creates the virtual environment from requirements.txt on first use (and again when it changes).
# `make test-reference` runs the tests that read the project's reference data (../shared/data beside the
# project's own checkout: the peers' reference outputs, the ModelNet40 sample, the meshes); a clone without it
# skips them and says so in one line.
# ACCELERATOR=cuda12|cuda13|tpu adds JAX's accelerator plugin at the pinned version (README, "Accelerators").
#
# Device work (README, "Accelerators"):
#   make device-wheels                  where PyPI is reachable: the wheels the GPU image lacks -> device_wheels/
#   make device-check OUT=DIR           on the GPU machine: install them, validate and measure -> DIR/device_check.json
#   make test-gpu-image                 CI: the GPU image's CPU twin (Python 3.12, jax 0.11.2) + the device wheels:
#                                       the test suite, then make device-check BACKEND=cpu

PYTHON ?= python3
# pip without compiling every installed module to bytecode up front (Python compiles what it imports, once, on
# first import): a fresh environment of requirements.txt took 61 s instead of 108 s on a 2-core machine
# (docs/development.md, "CI time")
PIP_INSTALL := pip install --quiet --no-compile
# ... so Python must be free to write the bytecode of what it imports, the first time: a shell (or a Docker
# image) that sets PYTHONDONTWRITEBYTECODE=1 made every process compile jax, flax and the rest from source
# again, about 8 s of each process's start on 2 cores (a flag error took 14 s instead of 6). Not passed on to
# any command here; setup writes the bytecode of everything main.py imports, so a later `python main.py` under
# such a shell reads it too.
unexport PYTHONDONTWRITEBYTECODE
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= runs/smoke
ACCELERATOR ?=
# pytest-xdist workers for the test suites (CI has 2 cores; 0 runs the tests in this process, one at a time);
# --dist loadgroup keeps the tests marked xdist_group("X") on one worker (they share an expensive fixture).
TEST_WORKERS ?= 2
JAX_VERSION = $(shell sed -n 's/^jax==//p' requirements.txt)

# A CPython 3.12 for the GPU image's twin and the source-built device wheels (pyenv's first, then PATH).
PYTHON312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))
WHEELS ?= device_wheels
OUT ?=
BACKEND ?= gpu
BUDGET_S ?= 480
# the device check's compilation cache: empty, its own (a device's cold figures), unless given
JAX_CACHE ?=
TORCH_VENV := .venv-torch
TORCH_STAMP := $(TORCH_VENV)/.installed
IMAGE_VENV := .venv-gpu-image
IMAGE_STAMP := $(IMAGE_VENV)/.installed
# What the twin runs: only what differs between its versions and the 3.11 leg's (docs/development.md, "CI"):
# the imports and requirements, the kernels and their Pallas lowering (Triton, Mosaic, jax.export for cpu, cuda and
# tpu), compiled-memory analysis, orbax's save and restore under an exact resume, and the device tooling; `make
# device-check BACKEND=cpu` after it runs the jobs end to end on jax 0.11.2 (train, resume, zero-shot, the attacks,
# the benchmarks, the portability benchmark). The model, attack and job tests run once, on the 3.11 leg.
GPU_IMAGE_TESTS := tests/test_requirements.py tests/test_fps.py tests/test_knn.py tests/test_kernels_exact.py \
	tests/test_backend.py tests/test_gpu_lowering.py tests/test_memory.py tests/test_device_check.py \
	tests/test_portability.py tests/test_train.py::test_resume_is_exact

# The tests' persistent compilation cache: one folder per jax version, shared by every process of a test run (the
# xdist workers, the jobs they start, the device check's items) and kept between runs, every program stored, so
# a second `make test` loads what the first compiled. `make clean-cache` removes it.
CACHE_HOME := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)
TEST_JAX_CACHE ?= $(CACHE_HOME)/ddjax/ci-jax-cache
IMAGE_JAX_VERSION = $(shell sed -n 's/^jax==//p' requirements-gpu-image.txt)
test_env = HF_HUB_OFFLINE=1 JAX_COMPILATION_CACHE_DIR=$(TEST_JAX_CACHE)/jax-$(1) \
	JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
# Line and branch coverage of ddjax/ and kernels/ (pyproject.toml's [tool.coverage.run]), a line per module.
COVERAGE ?= --cov --cov-report=term
# make test ends with its 15 slowest tests (--durations), so a CI log shows where its time goes.
# SMOKE_RUN=DIR: the smoke-run tests (tests/test_robustness.py) use this finished `make run` instead of training
SMOKE_RUN ?=

.PHONY: setup run test test-reference lint bench clean clean-cache device-wheels device-check test-gpu-image \
	gpu-image-env test-gpu-image-tests test-gpu-image-device-check torch-env print-test-jax-cache

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "ddjax needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/$(PIP_INSTALL) -r requirements.txt $(if $(ACCELERATOR),"jax[$(ACCELERATOR)]==$(JAX_VERSION)")
	$(BIN)/$(PIP_INSTALL) --no-deps -e .
	$(BIN)/python -c 'import main'
	@touch $(STAMP)

setup: $(STAMP)

# torch and ReCon's small requirements for benchmarks/peers.py, apart from ddjax's environment.
$(TORCH_STAMP): requirements-torch.txt
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --upgrade pip
	$(TORCH_VENV)/bin/$(PIP_INSTALL) -r requirements-torch.txt
	@touch $(TORCH_STAMP)

torch-env: $(TORCH_STAMP)

run: $(STAMP)
	$(BIN)/python main.py --config=configs/pretrain.py:smoke --workdir=$(WORKDIR)

test: $(STAMP)
	$(call test_env,$(JAX_VERSION)) $(if $(SMOKE_RUN),DDJAX_TEST_SMOKE_RUN=$(abspath $(SMOKE_RUN))) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup --durations=15 $(COVERAGE)

test-reference: $(STAMP)
	$(call test_env,$(JAX_VERSION)) $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup -m reference_data

# ruff (pyproject.toml): the formatting (ruff format .  fixes it) and the lint rules, 100 columns.
lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

# The seven CPU benchmarks of the docs' tables, each with --json into benchmarks/results/cpu-<date>/ (the
# side-by-side one, the classify, attack-noise and device checks have their own commands: docs/development.md).
BENCH_OUT ?= benchmarks/results/cpu-$(shell date +%F)
bench: $(STAMP)
	mkdir -p $(BENCH_OUT)
	for b in kernels model data train zeroshot attacks compile; do \
		$(BIN)/python benchmarks/$$b.py --json > $(BENCH_OUT)/$$b.json || exit 1; done

device-wheels: $(WHEELS)/MANIFEST.json

$(WHEELS)/MANIFEST.json: device-wheels.txt requirements-py312.txt benchmarks/device_wheels.py
	$(PYTHON) benchmarks/device_wheels.py --out $(WHEELS) $(if $(PYTHON312),--python312=$(PYTHON312))

device-check:
	@test -n "$(OUT)" || { echo "usage: make device-check OUT=DIR [BACKEND=gpu|tpu|cpu] [BUDGET_S=480] [WHEELS=device_wheels]" >&2; exit 2; }
	$(PYTHON) benchmarks/device_check.py --out "$(OUT)" --backend $(BACKEND) --budget $(BUDGET_S) --wheels "$(WHEELS)" \
		$(if $(JAX_CACHE),--jax-cache "$(JAX_CACHE)")

$(IMAGE_STAMP): requirements-gpu-image.txt
	@test -n "$(PYTHON312)" || { echo "make test-gpu-image needs a CPython 3.12: pass PYTHON312=PATH" >&2; exit 2; }
	rm -rf $(IMAGE_VENV)
	$(PYTHON312) -m venv $(IMAGE_VENV)
	$(IMAGE_VENV)/bin/pip install --quiet --upgrade pip
	$(IMAGE_VENV)/bin/$(PIP_INSTALL) -r requirements-gpu-image.txt
	@touch $(IMAGE_STAMP)

# The device wheels installed beside the twin's environment, as the GPU image gets them.
DEVICE_SITE := $(IMAGE_VENV)/device-site
$(DEVICE_SITE)/.installed: $(IMAGE_STAMP) $(WHEELS)/MANIFEST.json
	rm -rf $(DEVICE_SITE)
	$(IMAGE_VENV)/bin/pip install --quiet --no-index --no-deps --no-compile --target $(DEVICE_SITE) $(WHEELS)/*.whl
	@touch $@

# the twin's environment with the device wheels (CI builds it beside its first steps)
gpu-image-env: $(DEVICE_SITE)/.installed

# The twin's two parts, which CI runs side by side; `make test-gpu-image` runs one after the other (its
# prerequisites, in order).
test-gpu-image-tests: gpu-image-env
	$(call test_env,$(IMAGE_JAX_VERSION)) PYTHONPATH=$(CURDIR)/$(DEVICE_SITE) $(IMAGE_VENV)/bin/python \
		-m pytest -q -n $(TEST_WORKERS) --dist loadgroup $(GPU_IMAGE_TESTS)

test-gpu-image-device-check: gpu-image-env
	$(MAKE) device-check PYTHON=$(CURDIR)/$(IMAGE_VENV)/bin/python BACKEND=cpu BUDGET_S=1200 OUT=runs/device-check-cpu \
		JAX_CACHE=$(TEST_JAX_CACHE)/jax-$(IMAGE_JAX_VERSION)

test-gpu-image: test-gpu-image-tests test-gpu-image-device-check

clean-cache:
	rm -rf $(TEST_JAX_CACHE)

print-test-jax-cache:
	@echo $(TEST_JAX_CACHE)/jax-$(JAX_VERSION)

clean:
	rm -rf $(VENV) $(IMAGE_VENV) $(TORCH_VENV) $(WHEELS) *.egg-info
