#!/usr/bin/env bash
# Mutation testing of the models' loss, target, decoding and post-processing code with mutmut 2:
# one-line faults (operators, constants, dropped terms, swapped arguments) in the functions listed
# in dev/mutation/mutmut_config.py, each run against the test file that specifies that code, and
# a survivor again against the whole model-level set.
#
#   dev/mutation/run.sh                      # every target file
#   dev/mutation/run.sh modeling/postprocessing.py modeling/meta_arch/gfl.py
#
# Mutates a throwaway worktree of HEAD (commit first), never this checkout. Writes
# output/mutation/report.md (score, and the diff of every surviving mutant) and keeps mutmut's
# cache there (`cd output/mutation && mutmut-venv/bin/mutmut show ID` needs the worktree, so the
# report already holds the diffs).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
OUT=${OUT:-$ROOT/output/mutation}
TOOL_VENV=$OUT/mutmut-venv
mkdir -p "$OUT"
if [ ! -x "$TOOL_VENV/bin/mutmut" ]; then
    python3 -m venv "$TOOL_VENV"
    "$TOOL_VENV/bin/pip" install -q "mutmut==2.5.1"
fi
WORKTREE=$(mktemp -d /tmp/iou_aware_mutation.XXXXXX)
git worktree add -q --detach "$WORKTREE" HEAD
cp dev/mutation/mutmut_config.py "$WORKTREE/"
cd "$WORKTREE"
export PYTHONPATH=$WORKTREE/projects OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# One process imports torch and Detectron2 once and forks a pytest per mutant.
SOCKET=$WORKTREE/.fork_server.sock
"$PY" dev/mutation/fork_server.py serve --socket "$SOCKET" > "$OUT/fork_server.log" 2>&1 &
trap '"$PY" dev/mutation/fork_server.py stop --socket "$SOCKET" || true; git -C "$ROOT" worktree remove --force "$WORKTREE"' EXIT
for _ in $(seq 120); do [ -S "$SOCKET" ] && break; sleep 1; done
export MUTATION_PYTEST="$PY dev/mutation/fork_server.py run --socket $SOCKET -- -x -q -p no:cacheprovider"
if [ $# -gt 0 ]; then
    PATHS=$(printf 'projects/iou_aware/%s,' "$@"); PATHS=${PATHS%,}
else
    PATHS=$("$PY" -c 'import mutmut_config as m; print(",".join(m.target_files()))')
fi
TESTS=$("$PY" -c 'import mutmut_config as m; print(" ".join(m.all_test_files()))')
"$TOOL_VENV/bin/mutmut" run --paths-to-mutate "$PATHS" --tests-dir tests --no-progress --rerun-all \
    --runner "$MUTATION_PYTEST $TESTS" || true  # non-zero when mutants survive
"$TOOL_VENV/bin/mutmut" results > "$OUT/results.txt" || true
"$PY" "$ROOT/dev/mutation/report.py" --mutmut "$TOOL_VENV/bin/mutmut" --results "$OUT/results.txt" --output "$OUT/report.md"
cp .mutmut-cache "$OUT/"
cat "$OUT/report.md" | head -20
