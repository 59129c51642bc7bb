# Two entry points do all set-up on a fresh machine, idempotently:
#   make run   - set up, then the main job (`qwen-tool run`) on the built-in model
#   make test  - set up, then the test suite
# Set-up: a .venv with the local CPU build of torch first (so pip never pulls a CUDA build), the package with its dev
# extras, the BFCL data wheel and xgrammar (no deps), and the built-in model converted once into the cache
# ($QWEN_TOOL_HOME).

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

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q torch==$(TORCH_VERSION)
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
