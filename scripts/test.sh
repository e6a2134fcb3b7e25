#!/usr/bin/env bash
# shellcheck disable=SC2317  # step bodies are called indirectly through step()
# test.sh -- THE test command for postern (CI runs it through .ci/run).
#
#   sudo scripts/test.sh
#
# Steps: install deps, build, unit tests (ctest), sanitizer build + its ctest, integration
# tests (pytest against real INN sites), the same command-line integration tests with the
# sanitizer build of postern, a short libFuzzer smoke run.  Every step runs even
# when an earlier one failed (unless it needs that one's output); the exit status is non-zero
# if any step failed.
#
# Environment:
#   POSTERN_SKIP_DEPS=1     do not run scripts/install-deps.sh
#   POSTERN_FUZZ_SECONDS=N  seconds per fuzz target (default 10: 18 targets, run beside the integration tests)
#   POSTERN_SKIP_ASAN=1 / POSTERN_SKIP_FUZZ=1   skip those steps (not for CI)
#   JOBS=N                  parallel build jobs (default 2)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

JOBS=${JOBS:-2}
FUZZ_SECONDS=${POSTERN_FUZZ_SECONDS:-10}
PYTHON=/usr/bin/python3

PASSED=() FAILED=() SKIPPED=()
T_START=$(date +%s)

banner() { printf '\n==== %s ====\n' "$*"; }
note() { echo "test.sh: $*"; }

# step NAME COMMAND...: run, record the result, never abort the script
step() {
    local name=$1; shift
    local t0 rc
    banner "$name"
    t0=$(date +%s)
    set +e
    "$@"
    rc=$?
    set -e
    if [ "$rc" -eq 0 ]; then
        PASSED+=("$name")
        note "PASS: $name ($(( $(date +%s) - t0 ))s)"
    else
        FAILED+=("$name")
        note "FAIL: $name (exit $rc, $(( $(date +%s) - t0 ))s)"
    fi
    return 0
}

skip() {  # skip NAME REASON
    banner "$1"
    SKIPPED+=("$1")
    note "SKIP: $1 -- $2"
}

ok() {  # ok NAME: did step NAME pass?
    local s
    for s in "${PASSED[@]}"; do [ "$s" = "$1" ] && return 0; done
    return 1
}

# --- step bodies -----------------------------------------------------------------------------

deps() { scripts/install-deps.sh; }

build_tree() {  # build_tree DIR [cmake args...]
    local dir=$1; shift
    echo "+ cmake -S . -B $dir -DCMAKE_BUILD_TYPE=RelWithDebInfo $*"
    cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" || return 1
    echo "+ cmake --build $dir -j$JOBS"
    cmake --build "$dir" -j"$JOBS"
}

run_ctest() {  # run_ctest DIR
    echo "+ ctest --test-dir $1 --output-on-failure"
    ctest --test-dir "$1" --output-on-failure -j"$JOBS"
}

integration() {
    local bin=$ROOT/build/cli/postern
    if [ -x "$bin" ]; then
        note "POSTERN_BIN=$bin"
    else
        note "build/cli/postern not built yet: tests that need it are skipped by pytest"
    fi
    local rc=0
    echo "+ $PYTHON -m pytest -v tests/integration"
    POSTERN_BIN=$bin PYTHONDONTWRITEBYTECODE=1 timeout 1200 \
        "$PYTHON" -m pytest -v -p no:cacheprovider --durations=25 tests/integration || rc=$?
    if [ "$rc" -eq 5 ]; then
        if compgen -G "tests/integration/test_*.py" >/dev/null; then
            note "pytest collected no tests although tests/integration/test_*.py exist"
            return 1
        fi
        note "no integration tests yet"
        return 0
    fi
    return "$rc"
}

# The postern binary built with ASan+UBSan (and LeakSanitizer) through every integration test
# (deliver, lmtp, watch-maildir, mailbox, serve): sanitizer reports make postern exit non-zero
# or show up in the gateway's log, so the tests fail. The three-site mesh tests (marker "mesh")
# run only in the plain pass: they take minutes and add no code path the other tests do not
# already run here; run them under ASan with
#   POSTERN_BIN=build-asan/cli/postern python3 -m pytest -m mesh tests/integration
# The Debian package test (marker "package") builds its own binary, so it too runs only once.
sanitizer_integration() {
    local bin=$ROOT/build-asan/cli/postern
    echo "+ POSTERN_BIN=$bin $PYTHON -m pytest -v -m 'not mesh and not package' tests/integration"
    POSTERN_BIN=$bin PYTHONDONTWRITEBYTECODE=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 timeout 1500 \
        "$PYTHON" -m pytest -v -p no:cacheprovider --durations=25 -m "not mesh and not package" tests/integration
}

fuzz_targets() {  # names of built fuzz_* executables
    local f
    for f in build-fuzz/tests/fuzz/fuzz_*; do
        [ -f "$f" ] && [ -x "$f" ] && basename "$f"
    done
    return 0
}

fuzz_smoke() {
    local -a targets
    mapfile -t targets < <(fuzz_targets)
    local t work seeds rc=0
    mkdir -p build-fuzz/artifacts
    for t in "${targets[@]}"; do
        work=build-fuzz/corpus/$t
        seeds=tests/fuzz/corpus/$t
        mkdir -p "$work"
        local -a dirs=("$work")      # new inputs go to the first (scratch) directory
        [ -d "$seeds" ] && dirs+=("$seeds")
        echo "+ $t ${dirs[*]} -max_total_time=$FUZZ_SECONDS"
        if ! timeout $((FUZZ_SECONDS + 120)) "build-fuzz/tests/fuzz/$t" "${dirs[@]}" \
                -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
                -artifact_prefix="build-fuzz/artifacts/$t-" -print_final_stats=1 >"build-fuzz/$t.log" 2>&1; then
            tail -n 40 "build-fuzz/$t.log"
            note "fuzz target $t FAILED (artifacts in build-fuzz/artifacts/, log build-fuzz/$t.log)"
            rc=1
        else
            grep -E '^(stat::number_of_executed_units|Done)' "build-fuzz/$t.log" | tr '\n' ' '
            echo
            note "fuzz target $t ok"
        fi
    done
    return "$rc"
}

# --- run -----------------------------------------------------------------------------------

main() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "test.sh: must run as root (installs packages, starts INN sites): run it from a root shell" >&2
        exit 2
    fi
    note "repository $ROOT, $(nproc) cores, CI=${CI:-}"

    if [ "${POSTERN_SKIP_DEPS:-0}" = 1 ]; then
        skip "install dependencies" "POSTERN_SKIP_DEPS=1"
    else
        step "install dependencies" deps
    fi

    step "build" build_tree build
    if ok "build"; then
        step "unit tests" run_ctest build
    else
        skip "unit tests" "build failed"
    fi

    if [ "${POSTERN_SKIP_ASAN:-0}" = 1 ]; then
        skip "sanitizer build" "POSTERN_SKIP_ASAN=1"
    else
        step "sanitizer build" build_tree build-asan -DPOSTERN_SANITIZE=ON
        if ok "sanitizer build"; then
            step "sanitizer unit tests" run_ctest build-asan
        else
            skip "sanitizer unit tests" "sanitizer build failed"
        fi
    fi

    # The fuzz build and smoke run (one core for ~5 min, most of it libFuzzer) go in the
    # background beside the integration tests, which mostly wait on INN and timers: the whole
    # command stays under ~25 min on 2 cores. Niced, so the tests' processes come first; their
    # output is shown, as its own steps, once the integration tests are done.
    local fuzz_pid=""
    if [ "${POSTERN_SKIP_FUZZ:-0}" = 1 ] || ! compgen -G "tests/fuzz/fuzz_*.c" >/dev/null; then
        :
    else
        mkdir -p build-fuzz
        rm -f build-fuzz/run.log build-fuzz/run.rc
        note "fuzz build and smoke run in the background meanwhile (build-fuzz/run.log)"
        (
            renice -n 10 -p "$BASHPID" >/dev/null 2>&1 || true
            set +e
            if ! build_tree build-fuzz -DPOSTERN_FUZZ=ON -DCMAKE_C_COMPILER=clang; then
                echo 1 >build-fuzz/run.rc
            elif ! fuzz_smoke; then
                echo 2 >build-fuzz/run.rc
            else
                echo 0 >build-fuzz/run.rc
            fi
        ) >build-fuzz/run.log 2>&1 &
        fuzz_pid=$!
    fi

    # integration tests need INN only; tests needing the postern binary skip themselves without it
    step "integration tests" integration
    if ok "sanitizer build" && [ -x build-asan/cli/postern ]; then
        step "sanitizer integration tests" sanitizer_integration
    else
        skip "sanitizer integration tests" "no sanitizer build of postern"
    fi

    if [ "${POSTERN_SKIP_FUZZ:-0}" = 1 ]; then
        skip "fuzz build" "POSTERN_SKIP_FUZZ=1"
    elif [ -z "$fuzz_pid" ]; then
        skip "fuzz smoke" "no tests/fuzz/fuzz_*.c targets yet"
    else
        wait "$fuzz_pid" || true
        local fuzz_rc
        fuzz_rc=$(cat build-fuzz/run.rc 2>/dev/null || echo 1)
        banner "fuzz build and smoke (ran beside the integration tests)"
        cat build-fuzz/run.log
        step "fuzz build" test "$fuzz_rc" != 1
        if ok "fuzz build"; then
            step "fuzz smoke (${FUZZ_SECONDS}s per target)" test "$fuzz_rc" = 0
        else
            skip "fuzz smoke" "fuzz build failed"
        fi
    fi

    banner "summary"
    for s in "${PASSED[@]}"; do echo "  PASS  $s"; done
    for s in "${FAILED[@]}"; do echo "  FAIL  $s"; done
    for s in "${SKIPPED[@]}"; do echo "  SKIP  $s"; done
    echo "total time $(( $(date +%s) - T_START ))s"
    if [ ${#SKIPPED[@]} -gt 0 ]; then
        echo "${#PASSED[@]} passed, ${#FAILED[@]} failed, ${#SKIPPED[@]} skipped"
    else
        echo "${#PASSED[@]} passed, ${#FAILED[@]} failed"
    fi
    [ ${#FAILED[@]} -eq 0 ]
}

# one line: bash reads scripts lazily; an edit during a run cannot derail it
main "$@"; exit $?
