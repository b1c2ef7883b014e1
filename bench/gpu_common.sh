# Sourced by the prepared device scripts (bench/gpu_*.sh): the output folder and log, stage timing
# against the script's BUDGET, and the Python path (packages missing on the machine are installed
# from .whl/ when that folder exists). Set BUDGET before sourcing.
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
LOG="$OUT/log.txt"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( ${BUDGET:-600} - $(date +%s) + T0 )); }
stage() { echo "=== [$(el)s] $*" | tee -a "$LOG"; }

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
