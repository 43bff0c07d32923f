#!/usr/bin/env bash
# The compiled extensions under valgrind's memcheck, for a short part of the suite: the streams,
# the guards (counters, meters, the serve loop's gate) and the greenlet hub, on the compiled
# engine only. Fails on any invalid read, write or free anywhere, and on memory definitely lost
# with one of the package's compiled modules on the allocating stack.
#
# Under memcheck the interpreter runs 20-50 times slower: this takes about a minute and a half
# on a 2-core machine. .ci/run runs it (CYSOCKETSERVER_SKIP_MEMCHECK=1 skips it there).
# Usage: tests/memcheck.sh [extra pytest arguments]
# Needs valgrind (apt-get install valgrind; installed here when run as root on Debian/Ubuntu)
# and the extensions built in place (python setup.py build_ext --inplace) or installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if ! command -v valgrind >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        apt-get update -q >/dev/null && apt-get install -y -q valgrind >/dev/null
    else
        echo "memcheck.sh: valgrind is not installed (apt-get install valgrind)" >&2
        exit 2
    fi
fi

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
# An in-place build (python setup.py build_ext --inplace) is used where there is one; else the
# installed package (as in .ci/run).
if compgen -G "src/cysocketserver/_streams*.so" >/dev/null; then
    export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
fi
# The interpreter's own allocator hides use-after-free from memcheck: plain malloc instead.
export PYTHONMALLOC=malloc
"$PYTHON" -c "import cysocketserver, sys; sys.exit(cysocketserver.IMPLEMENTATION != 'compiled')" || {
    echo "memcheck.sh: the compiled extensions are not built" >&2; exit 2; }

# Waits in the tests are sized for a loaded machine, not for memcheck's slowdown: a test that
# times out here says nothing about memory, so the test outcome is reported but not judged.
set +e
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --num-callers=40 \
    --suppressions=tests/memcheck.supp \
    --log-file="$logs/memcheck.%p.log" \
    "$PYTHON" -m pytest -q -p no:cacheprovider \
        tests/test_streams.py tests/test_guards.py tests/test_greenlet.py tests/test_counters.py \
        tests/test_relay.py tests/test_clienthello.py \
        -k "compiled and not stdlib and not listen_fds and not docstring and not 64_mib and not fifty_pairs" "$@"
tests_status=$?
set -e

"$PYTHON" - "$logs" "$tests_status" <<'EOF'
import glob, re, sys

logs, tests_status = sys.argv[1], int(sys.argv[2])
OURS = re.compile(r"cysocketserver|_counters|_streams|_loop|_poller|_hub|_relay")
invalid, leaks = [], []
for path in glob.glob(logs + "/memcheck.*.log"):
    text = open(path, errors="replace").read()
    # One record: a header line and its stack, up to the next blank "==pid== " line.
    for record in re.split(r"\n==\d+== \n", text):
        first = record.strip().split("\n", 1)[0]
        if re.search(r"Invalid (read|write|free)|Mismatched free|overlap", first):
            invalid.append(record)
        elif "definitely lost in loss record" in record and OURS.search(record):
            leaks.append(record)
print("memcheck: %d invalid access(es), %d definite leak(s) from the package's modules "
      "(tests exited with %d)" % (len(invalid), len(leaks), tests_status))
for record in (invalid + leaks)[:10]:
    print(record[:3000], "\n")
sys.exit(1 if invalid or leaks else 0)
EOF
