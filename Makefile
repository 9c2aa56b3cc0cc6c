# Everything a fresh machine needs: `make demo` and `make test` install first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
RESULTS ?= results

.PHONY: install test test-fast demo bench gpu-check lint clean reproduce

install: $(STAMP)

# Re-installs only when pyproject.toml changes (the package itself is installed editable).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev,trackers]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow"

demo: install
	$(BIN)/hidden sweep run sweeps/quickstart.yaml --results $(RESULTS)
	$(BIN)/hidden analyze scaling quickstart --x width --by method --results $(RESULTS)

# Each paper's claim at small scale (sweeps/repro/, MNIST-1D, CPU): runs the sweeps (finished
# trials are skipped), then writes REPRODUCTIONS.md and docs/reproductions/ from the store.
# One claim alone: $(BIN)/python -m hidden_core.reproduce --results $(RESULTS)/repro --only g
reproduce: install
	$(BIN)/python -m hidden_core.reproduce --results $(RESULTS)/repro

bench: install
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

# A CUDA machine with PyTorch but no network: installs the rest from WHEELS (prepared with
# benchmarks/prepare_wheels.py on a machine with network), then checks every CUDA path.
GPU_PYTHON ?= $(PYTHON)
gpu-check:
	$(GPU_PYTHON) benchmarks/gpu_check.py $(WHEELS) $(GPU_CHECK_ARGS)

lint: install
	$(BIN)/ruff check hidden_core tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache
