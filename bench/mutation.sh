#!/usr/bin/env bash
# Mutation testing of the modules that guard data and results (idx, datasets, download, images,
# store, step, plan, executors, runner, the clustering metrics, the API server) against the fast
# in-process tests: [tool.mutmut] in pyproject.toml says which.
# Not part of CI: several hours on 2 cores (the API server's mutants run its tests, a fresh app
# each; `--resume` continues a stopped run from its verdicts). Prints the score per module and every
# surviving mutant; `.venv/bin/mutmut show NAME` shows one's diff.
# Usage: bench/mutation.sh [--resume] [PATTERN...]; a PATTERN (fnmatch, e.g.
# 'mnistlab.engine.executors*') runs only the mutants it names, for a run split over sessions.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--resume" ]; then shift; else rm -rf mutants; fi  # --resume keeps the verdicts
# joblib's loky workers, started in mutmut's own process, would be reaped by its os.wait
export JOBLIB_MULTIPROCESSING=0
# The API's tests read a quick study's run folder: made once here, not once per mutant.
root="$PWD"
quick_cwd="$root/mutants-quick-run"
if [ ! -f "$quick_cwd/mnistlab-runs/mnist-5k-quick/leaderboard.json" ]; then
    mkdir -p "$quick_cwd"
    (cd "$quick_cwd" && MNISTLAB_DATA="$quick_cwd/cache" MNISTLAB_MIRRORS_MNIST=http://127.0.0.1:9/ \
        "$root/.venv/bin/python" -m mnistlab study --profile quick --quiet)
fi
export MNISTLAB_TEST_QUICK_RUN="$quick_cwd/mnistlab-runs/mnist-5k-quick"
start=$(date +%s)
.venv/bin/mutmut run --max-children "${JOBS:-2}" "$@" > mutants.log 2>&1 || {
    tail -n 30 mutants.log; exit 1; }
echo "mutmut run: $(( $(date +%s) - start )) s"
.venv/bin/python bench/mutation_score.py --record "bash bench/mutation.sh $*"
