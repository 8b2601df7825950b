#!/usr/bin/env bash
# Regenerate every figure and table of the notebook series, or run the test suite.
#
#   ./run_all.sh                        all notebooks at the default `cpu` profile
#   ./run_all.sh --profile smoke 00 02  only notebooks 00 and 02, smoke profile
#   ./run_all.sh test [pytest args]     the test suite (unit tests + every notebook under `smoke`)
#   ./run_all.sh book [--profile smoke] the HTML book from executed/<profile>/ (default cpu), the README and
#                                       docs/methods/, executing nothing: _build/book/html/index.html
#
# With no Python environment active (no $VIRTUAL_ENV / $CONDA_PREFIX), it creates ./.venv and installs geodd
# into it first. Executed notebooks go to ./executed/<profile>/ (ignored by git); figures go to figures/.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

# torch wheels: override with GEODD_TORCH_SPEC (e.g. a CUDA index or a CPU-only build)
TORCH_SPEC="${GEODD_TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
PAPERMILL_TIMEOUT="${GEODD_CELL_TIMEOUT:-3600}"

# glibc's allocator returns every large block (> 32 MiB) to the OS when it is freed, so each conv activation of
# a CPU run is page-faulted in afresh: on the 2-core build machine that was ~45 % of a DM step's time. Keeping
# freed memory in the process (no mmap, no trim) removes it (benchmarks/README.md, "Allocator"). It is read at
# process start, so it is set here for the notebooks' kernels and the tests; GEODD_MALLOC_TUNE=0 opts out, and a
# GLIBC_TUNABLES you set yourself wins. Harmless elsewhere (non-glibc systems ignore the variable).
if [[ "${GEODD_MALLOC_TUNE:-1}" != 0 && -z "${GLIBC_TUNABLES:-}" ]]; then
  export GLIBC_TUNABLES="glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184"
fi

ensure_env() {
  if [[ -z "${VIRTUAL_ENV:-}" && -z "${CONDA_PREFIX:-}" ]]; then
    if [[ ! -x .venv/bin/python ]]; then
      echo "run_all.sh: creating .venv" >&2
      python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
  fi
  if ! python -c "import geodd, torch, torchvision, papermill, pytest, myst_nb, ray" >/dev/null 2>&1; then
    echo "run_all.sh: installing geodd and its dependencies into $(python -c 'import sys; print(sys.prefix)')" >&2
    python -m pip install --quiet --upgrade pip
    # shellcheck disable=SC2086
    python -m pip install --quiet $TORCH_SPEC
    python -m pip install --quiet -e ".[dev,ray,book]"
  fi
}

run_tests() {
  ensure_env
  local workers="${GEODD_TEST_WORKERS:-2}"
  python -m pytest -n "$workers" --dist loadgroup -q "$@"
}

# the book: stage the executed notebooks, README.md and docs/methods/ into _build/book/src and build them with
# Sphinx + myst-nb (execution off) into _build/book/html; book/build.py --help lists --executed DIR and --out DIR
build_book() {
  ensure_env
  python "$ROOT/book/build.py" "$@"
}

run_notebooks() {
  local profile="cpu"
  local selected=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --profile) profile="$2"; shift 2 ;;
      --profile=*) profile="${1#*=}"; shift ;;
      -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
      *) selected+=("$1"); shift ;;
    esac
  done
  case "$profile" in smoke|cpu|paper) ;; *) echo "run_all.sh: unknown profile '$profile' (smoke, cpu, paper)" >&2; exit 2 ;; esac
  ensure_env
  local outdir="$ROOT/executed/$profile"
  mkdir -p "$outdir"
  local notebooks=()
  for nb in "$ROOT"/notebooks/[0-9][0-9]_*.ipynb; do
    local num; num="$(basename "$nb" | cut -c1-2)"
    if [[ ${#selected[@]} -eq 0 ]] || printf '%s\n' "${selected[@]}" | grep -qx "$num"; then
      notebooks+=("$nb")
    fi
  done
  if [[ ${#notebooks[@]} -eq 0 ]]; then
    echo "run_all.sh: no notebook matches ${selected[*]:-(none)}" >&2; exit 2
  fi
  for nb in "${notebooks[@]}"; do
    local name; name="$(basename "$nb")"
    echo "== $name (profile $profile)" >&2
    local t0=$SECONDS
    if ! (cd "$ROOT/notebooks" && python -m papermill "$nb" "$outdir/$name" -p profile "$profile" \
            --execution-timeout "$PAPERMILL_TIMEOUT" --kernel python3 --log-level WARNING); then
      echo "run_all.sh: FAILED in notebook $name (executed copy: $outdir/$name)" >&2
      exit 1
    fi
    echo "   done in $((SECONDS - t0)) s" >&2
  done
}

case "${1:-}" in
  test) shift; run_tests "$@" ;;
  book) shift; build_book "$@" ;;
  *) run_notebooks "$@" ;;
esac
