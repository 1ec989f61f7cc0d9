#!/usr/bin/env bash
# The GPU checks of docs/performance.md in one pass, sized for a short lease of one GPU (about nine
# minutes): search-step and retrain-step benchmarks side by side with the official-style step,
# then a short CIFAR-10 search (darts_1st and asap) on the JPEG release and an equal short retrain of
# the two derived cells and DARTS_V2. Each step gets what is left of a global deadline, so a slow
# step costs the later ones, never the results already written.
#
#   ASSETS=gpu_assets OUT=/tmp/gpu DEADLINE_S=520 bash scripts/gpu_checks.sh
#
# ASSETS holds the wheels a bare GPU image lacks (hydra-core, omegaconf, antlr4) and
# cifar10-jpg.tar.gz; results land in OUT: bench.jsonl (one JSON object per configuration),
# runs.json (the summaries of the searches and retrains), steps.log, errors.log, gpu.txt.
set -u
ASSETS=${ASSETS:-gpu_assets}
OUT=${OUT:-/tmp/gpu}
DEADLINE=$(( $(date +%s) + ${DEADLINE_S:-520} ))
SEARCH_EPOCHS=${SEARCH_EPOCHS:-3}
TRAIN_EPOCHS=${TRAIN_EPOCHS:-2}
mkdir -p "$OUT" runs/gpu
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1

log() { echo "[$(date +%T)] $*" | tee -a "$OUT/steps.log" >&2; }
# step NAME LIMIT_S COMMAND...: run with the smaller of LIMIT_S and the time left.
step() {
  local name=$1 limit=$2 left
  shift 2
  left=$(( DEADLINE - $(date +%s) ))
  (( left < limit )) && limit=$left
  if (( limit < 15 )); then log "skip $name (deadline)"; return; fi
  log "start $name (limit ${limit}s)"
  echo "=== $name" >> "$OUT/errors.log"
  timeout --signal=TERM --kill-after=20 "$limit" "$@" 2>> "$OUT/errors.log"
  log "end $name rc=$?"
}

python3 -c "import hydra" 2>/dev/null || python3 -m pip install -q --no-index --no-deps "$ASSETS"/wheels/*.whl
mkdir -p data/cifar10-jpg && tar -xzf "$ASSETS/cifar10-jpg.tar.gz" -C data/cifar10-jpg
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  python3 -c "import torch, sys; print('torch', torch.__version__, 'python', sys.version.split()[0])"; date -u; } \
  > "$OUT/gpu.txt" 2>&1

B="python3 scripts/bench_search.py --device cuda --steps 15 --warmup 5"
step bench_1st_2nd 90 $B --algorithm darts_1st,darts_2nd --batch-size 64,256 >> "$OUT/bench.jsonl"
step bench_official 90 $B --algorithm darts_1st,darts_2nd --batch-size 64,256 --official-style >> "$OUT/bench.jsonl"
step bench_variants 60 $B --algorithm darts_1st --batch-size 64 --amp bf16 >> "$OUT/bench.jsonl"
step bench_nocl 40 $B --algorithm darts_1st --batch-size 64 --no-channels-last >> "$OUT/bench.jsonl"
step bench_asap 60 $B --algorithm asap --batch-size 64 --pruned-fraction 0,0.5,0.875 >> "$OUT/bench.jsonl"
step bench_plugins 60 $B --algorithm gdas,drnas,darts_2nd_exact --batch-size 64 >> "$OUT/bench.jsonl"
step bench_train 60 python3 scripts/bench_train.py --device cuda --model cifar --batch-size 96,256 --amp bf16 \
  --steps 15 --warmup 5 >> "$OUT/bench.jsonl"

DATA="data=cifar10_jpg data.root=data/cifar10-jpg"
for algo in darts_1st asap; do
  step "search_$algo" 150 python3 -m nas.search $DATA algorithm=$algo epochs=$SEARCH_EPOCHS device=cuda \
    diagnostics.hessian_every=0 log.progress=false log.images=false "hydra.run.dir=runs/gpu/search_$algo"
done
for name in darts_1st asap DARTS_V2; do
  genotype=$name
  [[ -f runs/gpu/search_$name/genotype.json ]] && genotype=runs/gpu/search_$name/genotype.json
  step "train_$name" 100 python3 -m nas.train $DATA "genotype=$genotype" epochs=$TRAIN_EPOCHS batch_size=256 \
    optim.lr=0.05 amp=bf16 device=cuda data.workers=12 log.progress=false log.images=false \
    "hydra.run.dir=runs/gpu/train_$name"
done

python3 - "$OUT/runs.json" <<'EOF'
import json, pathlib, sys
runs = {}
for summary in sorted(pathlib.Path("runs/gpu").glob("*/summary.json")):
    runs[summary.parent.name] = json.loads(summary.read_text())
pathlib.Path(sys.argv[1]).write_text(json.dumps(runs, indent=1))
EOF
log "done"
