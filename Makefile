# The two commands a newcomer types: `make run` (the main job on built-in data) and `make test`.
# Each creates the virtual environment from requirements.txt on first use (and again when it changes).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
WORKDIR ?= runs/smoke

.PHONY: setup run test bench clean

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] >= (3, 11), "ddjax needs Python >= 3.11, found " + sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP)

run: $(STAMP)
	$(BIN)/python main.py --config=configs/pretrain.py:smoke --workdir=$(WORKDIR)

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

bench: $(STAMP)
	for b in kernels model data train zeroshot attacks; do $(BIN)/python benchmarks/$$b.py; done

clean:
	rm -rf $(VENV) *.egg-info
