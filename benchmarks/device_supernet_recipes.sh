#!/usr/bin/env bash
# Supernet recipes compared on one GPU against the cpu-scale standalone figures.
#
#     bash benchmarks/device_supernet_recipes.sh OUT_DIR [PHASE1_SECONDS] [TOTAL_SECONDS]
#
# Issue 22 asks which supernet recipe makes sub-nets rank archs and score near their
# standalone accuracy. The 20 standalone nets of results/standalone_cpu.json were trained
# at the cpu scale (1,000 training images per class, 15 epochs): every supernet here trains
# on that same data, on cuda, so its sub-nets are scored against those figures without
# training a single standalone net again. Phase 0 runs the gpu-marked tests and trains
# ShuffleNetV2 x1.0 standalone on cuda (the control: does the device move a standalone
# figure?); phase 1 trains the supernet variants side by side (they only train); phase 2
# scores and times them one at a time (benchmarks/supernet_ranking.py: Kendall tau, fraction
# of standalone, cost ratio to x1.0 measured side by side on the same GPU). Everything
# lands under OUT_DIR (results/, logs/), packed into OUT_DIR/results.tar.gz at the end.
#
# On a lent machine whose python3 holds torch but not optuna (carry wheels of optuna,
# alembic, colorlog, Mako, SQLAlchemy and torch-pruning in .whl/, and the CIFAR-10 archive
# in .gpu/), the launch line is:
#   mkdir -p /tmp/pybin && rm -f /tmp/pybin/python && printf '#!/bin/sh\nexec %s "$@"\n' "$(command -v python3)" \
#     >/tmp/pybin/python && chmod +x /tmp/pybin/python && export PATH=/tmp/pybin:$PATH
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   export PYTHONPATH=$PWD:/tmp/site; mkdir -p ../shared/data && cp .gpu/*.tar.gz ../shared/data/
#   bash benchmarks/device_supernet_recipes.sh "$OUT" 240 550
# The old wrapper is removed first: writing through a path that is a link to the
# interpreter overwrites the interpreter (one session's run did, and hung until its limit).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: device_supernet_recipes.sh OUT_DIR [PHASE1_SECONDS] [TOTAL_SECONDS]}
phase1=${2:-280}
total=${3:-560}
started=$SECONDS
scale=${SCALE:-cpu} device=${DEVICE:-cuda}  # SCALE=tiny DEVICE=cpu: a dry run of the script
work=runs/bench-search-$scale-$device
results=$out/results
logs=$out/logs
mkdir -p "$results" "$logs" "$work"
cp benchmarks/results/standalone_cpu.json benchmarks/results/supernet_ranking_cpu.json "$results/"
per_run=90  # seconds at most to score and time one variant
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=2

pack() { tar -czf "$out/results.tar.gz" -C "$out" results logs; }
trap pack EXIT
trap 'exit 143' TERM INT  # killed at the call's limit: still pack what is there

# The variants: supernet recipe changes (a TrainConfig field each), most wanted first.
variants=(
  ""
  "strategy=sandwich"
  "epochs=45"
  "strategy=progressive"
  "strategy=flops-stratified"
  "epochs=90"
  "strategy=sandwich distill=false"
  "strategy=sandwich epochs=45"
)
# VARIANTS="|strategy=sandwich": a '|'-separated subset ('' is the shared recipe)
if [ -n "${VARIANTS+x}" ]; then IFS='|' read -r -a variants <<<"$VARIANTS"; fi
options() { for kv in $1; do printf -- '--supernet-option %s ' "$kv"; done; }
slug() { local s=${1// /_}; echo "${s:-shared}"; }

echo "== phase 0: decoded-data cache, gpu tests, x1.0 standalone on cuda ($((SECONDS - started)) s)"
python -c "import sys; sys.path.insert(0, 'benchmarks'); import _cifar; _cifar.data_of('$scale')"
[ "$device" = cuda ] && timeout 150 python -m pytest -m gpu -q -p no:cacheprovider tests/test_train.py tests/test_latency.py >"$logs/pytest_gpu.log" 2>&1 &
timeout "$phase1" python - "$results/standalone_x1_0_$device.json" "$scale" "$device" >"$logs/standalone_x1_0.log" 2>&1 <<'EOF' &
import json, sys, time
sys.path.insert(0, "benchmarks")
import _cifar
from _common import SCALES
from nas import preset
from nas.env import machine_info
from nas.train import train

scale, device = sys.argv[2], sys.argv[3]
data = _cifar.data_of(scale)
arch = preset("shufflenet_v2_x1_0_cifar")
t0 = time.time()
metrics = train(arch, data, SCALES[scale].recipe(), f"runs/standalone-x1_0-{device}", device=device)
json.dump({"arch": arch.short_name(), "arch_hash": arch.hash, "metrics": metrics,
           "wall_s": time.time() - t0, "machine": machine_info()}, open(sys.argv[1], "w"), indent=1)
EOF

echo "== phase 1: ${#variants[@]} supernets side by side, at most ${phase1} s ($((SECONDS - started)) s)"
pids=()
for v in "${variants[@]}"; do
  # shellcheck disable=SC2046
  timeout "$phase1" python benchmarks/supernet_ranking.py --scale "$scale" --device "$device" \
    --work "$work" --results "$results" --train-only $(options "$v") \
    >"$logs/train-$(slug "$v").log" 2>&1 &
  pids+=($!)
done
wait "${pids[@]}"
wait
echo "   trained: $(ls -d "$work"/supernet*/supernet.pt 2>/dev/null | wc -l) of ${#variants[@]}"

echo "== phase 2: score and time one at a time ($((SECONDS - started)) s)"
score() {  # variant, extra options...
  local v=$1 log
  shift
  log="$logs/score-$(slug "$v")$(printf -- '%s' "$@" | tr -c 'A-Za-z0-9_.-' _).log"
  if ! grep -q "^supernet in" "$logs/train-$(slug "$v").log"; then
    echo "   $(slug "$v"): not trained in time, skipped"
    return
  fi
  if [ $((SECONDS - started)) -gt $((total - per_run)) ]; then
    echo "   $(slug "$v"): no time left, skipped"
    return
  fi
  # shellcheck disable=SC2046
  timeout "$per_run" python benchmarks/supernet_ranking.py --scale "$scale" --device "$device" --work "$work" \
    --results "$results" --cost-rounds 3 --cost-steps 20 $(options "$v") "$@" >"$log" 2>&1
  echo "   $(slug "$v") $*: $(grep -o 'Kendall tau.*alone (measured' "$log" | cut -c1-330)"
}
for v in "${variants[@]}"; do score "$v"; done
score "" --bn-batches 32
echo "== done ($((SECONDS - started)) s)"
