#!/usr/bin/env bash
# The checks of one GPU session (issue 6 §7, issue 7 §6), run from the repository root on
# a CUDA machine; every part logs to $OUT and one failing part does not stop the others.
#
#   OUT=gpu-out STORE=path/to/store bash benchmarks/gpu_checks.sh bench   # throughput tables
#   OUT=gpu-out STORE=path/to/store [STEPS=2000] bash benchmarks/gpu_checks.sh demo
#   OUT=gpu-out STORE=path/to/store bash benchmarks/gpu_checks.sh drift   # longer budgets, more seeds
#   OUT=gpu-out STORE=path/to/store bash benchmarks/gpu_checks.sh tests   # the CUDA-marked tests (pytest -m gpu)
#
# The GPU image has torch, torchvision and torch-geometric but not gemmi or plotly: carry
# their wheels (gemmi 0.7.5, plotly 7.1.0) and put them on PYTHONPATH first, e.g.
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site WHEELS/*.whl; export PYTHONPATH=/tmp/site
# STORE: a point-cloud store (protein-care build-dataset; the demo's is built from the
# corpus folders of ../shared/pdb with --selection ca --min-points 20 --max-points 3000).
# bench: protein training throughput (bench_train.py, CUDA rows), the vision step
#   benchmark with the Table 1 wall-clock estimates (bench_vision_step.py), and two short
#   digits pretraining runs through the real CLI (bf16, compiled and eager).
# drift: the settings sweep at 5,000 steps for seeds 1 and 2, with --anti-invariance 1 (seed 0 ran on 2026-11-26: the
#   split embedding held at 5,000 and 10,000 steps, the paper's CARE reached 49 deg), ~3 min each.
# demo: protein-care demo on the given store at STEPS steps per run (default: the demo's own); results.json,
#   report.html and the runs (weights snapshots, configs, metrics) come back in $OUT.
set -u
OUT=${OUT:?set OUT to an output folder}
STORE=${STORE:?set STORE to a point-cloud store}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

part() {  # part NAME SECONDS command...: run with a time limit, log to $OUT/NAME.log
    local name=$1 limit=$2; shift 2
    echo "=== $name (limit ${limit}s) $(date +%T)"
    local t0=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    echo "=== $name: rc $rc in $((SECONDS - t0)) s"
    grep -v -i "warn" "$OUT/$name.log" | tail -n "${TAIL:-25}"
}

case ${1:-bench} in
bench)
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $PY -c "import torch, torchvision, torch_geometric as g; print(torch.__version__, torchvision.__version__, g.__version__, torch.cuda.get_device_name())"
    # the trainer's default view window on CUDA, with one step at a time (W = 1) timed beside it
    part bench_train 150 $PY benchmarks/bench_train.py --device cuda --store "$STORE" --batch-sizes 64 256 1024 \
        --write "$OUT/bench_train_cuda.md"
    # VISION_ARGS: extra options, e.g. --no-estimates to skip the Table 1 wall-clock estimates;
    # "--compile-augment --joint-passes --compile-model --profile" adds the rows of the levers
    # on the network's rate (benchmarks/results/vision_step_flops.md) and the GPU's busy share
    part bench_vision_step "${VISION_LIMIT:-280}" $PY benchmarks/bench_vision_step.py --steps 15 --estimate-steps 8 \
        --out "$OUT/bench_vision_step.json" ${VISION_ARGS:-}
    # Two 2-epoch digits runs on CUDA, compiled and eager, same seed: the 2026-11-25 eager run's
    # final kNN equalled the random init's (78.61 %); the loss columns show whether it trained.
    # (It was launched as "torchrun --nproc_per_node 1 ... run.sync_bn=true", but one process is
    # not distributed: no DDP, no SyncBatchNorm. Both need two or more GPUs; the lent machines have one.)
    for mode in $([ "${DIGITS:-1}" = 1 ] && echo compile eager); do  # DIGITS=0 skips them
        extra=$([ $mode = compile ] && echo run.compile=true || echo run.compile=false)
        TAIL=4 part digits_$mode 90 $PY -m vision_benchmarks.cli pretrain --config digits_care --out /tmp/v-$mode \
            --set run.device=cuda $extra optim.epochs=2 run.knn_every=1 run.log_every=5
        $PY -c "import json, sys; rows = [json.loads(l) for l in open(sys.argv[1])]; \
print([(r.get('step'), round(r['loss'], 4)) for r in rows if 'loss' in r and 'step' in r][:: max(1, len(rows) // 8)]); \
print([(r['epoch'], r.get('knn_top1'), r.get('knn_top1_random_init')) for r in rows if 'knn_top1' in r or 'knn_top1_random_init' in r]); \
res = json.load(open(sys.argv[2])); print('final', res['knn_top1'], 'random init', res['knn_top1_random_init'])" \
            /tmp/v-$mode/metrics.jsonl /tmp/v-$mode/results.json
    done
    ;;
tests)
    # the tests marked gpu (skipped where there is no CUDA): the data paths and the trainer
    # on CUDA against the CPU's (tests/*/test_device_paths.py) and the like
    # (the files that hold gpu-marked tests: collecting all of tests/ would import the app's
    # browser-test packages, which the GPU image lacks)
    TAIL=15 part gpu_tests "${LIMIT:-240}" $PY -m pytest -q -m gpu -p no:cacheprovider \
        tests/protein_care/test_device_paths.py tests/protein_care/test_augment.py tests/vision_benchmarks/test_device_paths.py \
        tests/vision_benchmarks/test_flowers.py
    ;;
drift)
    for seed in ${SEEDS:-1 2}; do
        TAIL=8 part drift_seed$seed "${LIMIT:-260}" $PY benchmarks/sweep_protein_settings.py --store "$STORE" --device cuda \
            --steps "${STEPS:-5000}" --seed "$seed" --only "CARE λ=30" "CARE split λ=1" "CARE split λ=1 anti=1" --out "$OUT/drift_seed$seed.json"
    done
    ;;
demo)
    # run_demo directly: the CLI imports every command, and build-dataset needs Biopython,
    # which the GPU image lacks (it has no gemmi or plotly either: carry their wheels)
    part demo "${LIMIT:-330}" $PY -c "from protein_care.demo import run_demo; \
run_demo('/tmp/demo', store_dir='$STORE', steps=${STEPS:-None}, device='cuda')"
    cp /tmp/demo/results.json "$OUT/demo_results.json"
    cp /tmp/demo/report.html "$OUT/demo_report.html"
    tar czf "$OUT/demo_runs.tgz" -C /tmp/demo --exclude checkpoint.pt runs
    ls -la "$OUT"
    ;;
*)
    echo "usage: OUT=... STORE=... bash benchmarks/gpu_checks.sh bench|tests|drift|demo" >&2
    exit 2
    ;;
esac
