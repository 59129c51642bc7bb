#!/usr/bin/env bash
# The GPU check (issue 29): vLLM generation, one GRPO step with vLLM rollouts and the weight sync (two steps, so the
# second samples the synced weights), and a few bf16 SFT steps, in at most 10 minutes on one GPU. Results go to $OUT:
# gpu_check.json (one line per step: status ok / failed / skipped, seconds, why), environment.json, generate.json,
# rl_metrics.jsonl and steps.log (every step's output, in order): six files, within the eight a device call returns.
#
#   benchmarks/gpu_check.sh --prepare    here, where PyPI and the model cache are: gathers .gpu-check/ (the model's
#                                        config and tokenizer, and wheels the GPU machine lacks); carry that folder
#   benchmarks/gpu_check.sh              on the GPU machine, from the repository root
#   benchmarks/gpu_check.sh --dry-run    anywhere: checks that it starts (arguments, assets, Python, the package) and
#                                        prints the commands it would run; runs none of them
#
# The GPU machine has no network. The model's real weights (538 MB; 98 MB as the wheel's GGUF) do not fit the 64 MiB a
# device call carries, so unless .gpu-check/model holds model.safetensors the check builds the same architecture with
# random weights: speed, memory and the plumbing are what it measures, not rewards. vLLM's wheel (hundreds of MB) does
# not fit either: without vllm there, the vLLM steps are reported as skipped and the GRPO step runs with
# backend=transformers instead.
# Environment: PYTHON (default python3), OUT (default results/gpu-check), GPU_CHECK_ASSETS (default .gpu-check).
set -uo pipefail

usage="usage: benchmarks/gpu_check.sh [--dry-run | --prepare]"
mode=run
case "${1:-}" in
  "") ;;
  --dry-run) mode=dry-run ;;
  --prepare) mode=prepare ;;
  -h|--help) echo "$usage"; exit 0 ;;
  *) echo "gpu_check.sh: unknown argument '$1'; fix: $usage" >&2; exit 2 ;;
esac
[ $# -le 1 ] || { echo "gpu_check.sh: one argument at most; fix: $usage" >&2; exit 2; }

cd "$(dirname "$0")/.." || exit 1
PYTHON=${PYTHON:-python3}
OUT=${OUT:-results/gpu-check}
ASSETS=${GPU_CHECK_ASSETS:-.gpu-check}
WORK=${GPU_CHECK_WORK:-/tmp/qwen-tool-gpu-check}
BUDGET_S=570  # 9.5 minutes of steps, within the 10 the check may take
# Wheels the GPU image lacks (its package list: torch, transformers, accelerate, peft, ... but not these), at the
# versions this project's CPU venv runs, for the image's Python 3.12.
WHEELS="trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 jsonschema==4.26.0
jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 pydantic==2.14.4 pydantic-core==2.50.5
annotated-types==0.8.0 typing-inspection==0.4.5"

if [ "$mode" = prepare ]; then
  cache="${QWEN_TOOL_HOME:-$HOME/.cache/qwen-tool}/models/smollm2-135m-instruct"
  [ -f "$cache/config.json" ] || { echo "gpu_check.sh: no built-in model at $cache; fix: make assets" >&2; exit 1; }
  mkdir -p "$ASSETS/model" "$ASSETS/wheels"
  for f in config.json generation_config.json tokenizer.json tokenizer_config.json chat_template.jinja; do
    cp "$cache/$f" "$ASSETS/model/"
  done
  # shellcheck disable=SC2086
  "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d "$ASSETS/wheels" $WHEELS || exit 1
  echo "prepared $ASSETS ($(du -sh "$ASSETS" | cut -f1); a device call carries 64 MiB in all): name it in carry"
  exit 0
fi

[ -f "$ASSETS/model/config.json" ] && [ -f "$ASSETS/model/tokenizer.json" ] || {
  echo "gpu_check.sh: no model config and tokenizer in $ASSETS/model; fix: run benchmarks/gpu_check.sh --prepare" \
       "where the model cache is, and carry $ASSETS" >&2
  exit 1
}
command -v "$PYTHON" >/dev/null || { echo "gpu_check.sh: no '$PYTHON'; fix: set PYTHON" >&2; exit 1; }

site="$WORK/site"
export PYTHONPATH="$PWD/src:$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
model="$WORK/smollm2-135m-instruct"
data="$WORK/train.jsonl"
cli=("$PYTHON" -m qwen_tool.cli)
rl_args=(train rl "model=$model" "data=$data" "output_dir=$WORK/rl" tool_format=hermes precision=bf16 steps=2
         prompts_per_step=8 samples_per_prompt=4 max_new_tokens=64 "suites=[weather,finance]" save_steps=100)
sft_args=(train sft "model=$model" "data=$data" "output_dir=$WORK/sft" tool_format=hermes precision=bf16 epochs=1
          max_examples=64 examples_per_device=8 gradient_accumulation=1 max_length=1024 logging_steps=1
          save_steps=1000)

if [ "$mode" = dry-run ]; then
  "$PYTHON" -c "import qwen_tool" 2>/dev/null || { echo "gpu_check.sh: '$PYTHON' cannot import qwen_tool from" \
    "src/; fix: run from a checkout of the repository" >&2; exit 1; }
  echo "gpu_check.sh --dry-run: assets in $ASSETS ($(ls "$ASSETS/wheels" 2>/dev/null | wc -l) wheels), results to $OUT"
  echo "would run (each step under its own timeout, $BUDGET_S s in all):"
  echo "  environment: $PYTHON benchmarks/gpu_check.py environment $OUT/environment.json"
  echo "  model:       $PYTHON benchmarks/gpu_check.py model $ASSETS/model $model"
  echo "  data:        ${cli[*]} data synth --n 200 --out $data"
  echo "  generate:    $PYTHON benchmarks/gpu_check.py generate $model $OUT/generate.json"
  echo "  grpo_vllm:   ${cli[*]} ${rl_args[*]} backend=vllm"
  echo "  sft_bf16:    ${cli[*]} ${sft_args[*]}"
  exit 0
fi

mkdir -p "$OUT" "$WORK"
started=$SECONDS
results="$OUT/gpu_check.json"
: >"$results"
log="$OUT/steps.log"
: >"$log"
record() {  # name status seconds why
  "$PYTHON" -c 'import json, sys; s, status, seconds, why = sys.argv[1:]
print(json.dumps({"step": s, "status": status, "seconds": int(seconds), "why": why}))' "$1" "$2" "$3" "$4" |
    tee -a "$results"
}
step() {  # name limit_s command...: run it under a timeout within what is left of the budget
  local name=$1 limit=$2 t0=$SECONDS left rc
  shift 2
  left=$((BUDGET_S - (SECONDS - started)))
  [ "$left" -lt "$limit" ] && limit=$left
  if [ "$limit" -lt 20 ]; then record "$name" skipped 0 "the 10-minute budget is spent"; return 1; fi
  echo "=== $name: $*" >>"$log"
  timeout "$limit" "$@" >>"$log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then record "$name" ok $((SECONDS - t0)) ""; return 0; fi
  local why="exit $rc"
  [ $rc -eq 124 ] && why="timed out after $limit s"
  record "$name" failed $((SECONDS - t0)) "$why; last line: $(tail -n 1 "$log" | cut -c1-200)"
  return 1
}

if ls "$ASSETS"/wheels/*.whl >/dev/null 2>&1; then  # ahead of the image's packages on PYTHONPATH (it lacks them)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$ASSETS"/wheels/*.whl \
    >>"$log" 2>&1 || echo "gpu_check.sh: installing the carried wheels failed (see steps.log)" >&2
fi
step environment 60 "$PYTHON" benchmarks/gpu_check.py environment "$OUT/environment.json" || exit 1
missing=$("$PYTHON" -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['missing']))" \
          "$OUT/environment.json")
gpu=$("$PYTHON" -c "import json,sys; print(json.load(open(sys.argv[1]))['gpu'])" "$OUT/environment.json")
echo "GPU: $gpu; missing packages: ${missing:-none}"
[ "$gpu" != none ] || { record all failed 0 "torch sees no CUDA GPU"; exit 1; }
for needed in torch transformers accelerate peft trl datasets; do
  case " $missing " in *" $needed "*) record all failed 0 "$needed is missing (carry its wheel: --prepare)"; exit 1;; esac
done

step model 120 "$PYTHON" benchmarks/gpu_check.py model "$ASSETS/model" "$model" || exit 1
step data 60 "${cli[@]}" data synth --n 200 --out "$data" || exit 1
backend=vllm
case " $missing " in
  *" vllm "*)
    record generate skipped 0 "vllm is not installed here (its wheel does not fit the 64 MiB a device call carries)"
    backend=transformers ;;
  *) step generate 180 "$PYTHON" benchmarks/gpu_check.py generate "$model" "$OUT/generate.json" ;;
esac
step "grpo_$backend" 240 "${cli[@]}" "${rl_args[@]}" "backend=$backend"
cp "$WORK/rl/metrics.jsonl" "$OUT/rl_metrics.jsonl" 2>/dev/null
step sft_bf16 180 "${cli[@]}" "${sft_args[@]}"
echo "gpu_check.sh: done in $((SECONDS - started)) s; results in $results"
