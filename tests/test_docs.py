"""The documentation keeps its promises: every Python example runs, every relative link leads
somewhere, and the README gives the one test command CI runs.

An example is a fenced block marked ```python in README.md or docs/*.md. Each is a whole
program: it is run on its own in a fresh interpreter, on each engine, and must exit 0 within
EXAMPLE_TIMEOUT seconds. That is why the examples serve on port 0 in a thread, talk to their
server as a client would and call shutdown(): a server that served forever could not be tested.
Blocks that are not programs (shell commands, output) are fenced as sh, console or text.

The examples run side by side (they mostly wait on sockets), so the whole file takes a few
seconds. Where the documents are not next to the tests (a copy of tests/ alone), it skips.
"""
import concurrent.futures
import glob
import os
import re
import subprocess
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.path.dirname(TESTS_DIR)
README = os.path.join(SOURCE_ROOT, "README.md")
CI_SCRIPT = os.path.join(SOURCE_ROOT, ".ci", "run")
EXAMPLE_TIMEOUT = 60
PARALLEL_EXAMPLES = 8
ENGINES = {"compiled": {}, "pure": {"CYSOCKETSERVER_NO_EXTENSIONS": "1"}}

FENCE = re.compile(r"^(`{3,}|~{3,})\s*([^\s`]*)")
LINK = re.compile(r"(?<!\!)\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
INLINE_CODE = re.compile(r"(`+).*?\1")


def documents():
    found = sorted(glob.glob(os.path.join(SOURCE_ROOT, "docs", "*.md")))
    if os.path.exists(README):
        found.insert(0, README)
    return found


def name_of(path):
    return os.path.relpath(path, SOURCE_ROOT)


class Block:
    """A fenced block: the document, the line of its opening fence, its language and text."""

    def __init__(self, path, line, language, text):
        self.path, self.line, self.language, self.text = path, line, language, text

    @property
    def where(self):
        return "%s:%d" % (name_of(self.path), self.line)


def _closes(line, fence):
    stripped = line.strip()
    return len(stripped) >= len(fence) and set(stripped) == {fence[0]}


def split(path):
    """The fenced blocks of a document, and its prose lines (number, text) outside them."""
    blocks, prose = [], []
    opened = None
    with open(path, encoding="utf-8") as file:
        for number, line in enumerate(file, 1):
            line = line.rstrip("\n")
            if opened is None:
                match = FENCE.match(line)
                if match:
                    opened = (match.group(1), number, match.group(2), [])
                else:
                    prose.append((number, line))
            elif _closes(line, opened[0]):
                _fence, start, language, lines = opened
                blocks.append(Block(path, start, language, "\n".join(lines) + "\n"))
                opened = None
            else:
                opened[3].append(line)
    if opened is not None:
        raise AssertionError("%s:%d: this fence is never closed" % (name_of(path), opened[1]))
    return blocks, prose


def examples():
    return [block for path in documents() for block in split(path)[0] if block.language == "python"]


EXAMPLES = examples()


def _selected_runs(session):
    """The (example, engine) pairs this pytest session will ask for."""
    runs = []
    for item in session.items:
        if item.originalname == "test_example_runs" and item.module.__name__ == __name__:
            params = item.callspec.params
            runs.append((params["example"].where, params["engine"]))
    return runs


def run_example(block, engine, workdir):
    """Run one example as a script in a fresh interpreter; (exit status, output)."""
    script = os.path.join(workdir, "%s_%d_%s.py" % (re.sub(r"\W", "_", name_of(block.path)),
                                                     block.line, engine))
    with open(script, "w", encoding="utf-8") as file:
        file.write(block.text)
    env = dict(os.environ)
    env.pop("CYSOCKETSERVER_NO_EXTENSIONS", None)
    env.update(ENGINES[engine])
    # Only the installed package: not a directory that happens to hold a "cysocketserver".
    env.pop("PYTHONPATH", None)
    def in_document(output):
        # Traceback lines name the document's own line, not the temporary script's.
        return re.sub(r'File "%s", line (\d+)' % re.escape(script),
                      lambda match: 'File "%s", line %d' % (name_of(block.path),
                                                             block.line + int(match.group(1))),
                      output)

    try:
        done = subprocess.run([sys.executable, script], cwd=workdir, env=env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=EXAMPLE_TIMEOUT)
    except subprocess.TimeoutExpired as exc:
        return None, in_document((exc.output or b"").decode(errors="replace"))
    return done.returncode, in_document(done.stdout.decode(errors="replace"))


@pytest.fixture(scope="module")
def example_results(request, tmp_path_factory):
    """Every selected example run, side by side, once for the module."""
    from cysocketserver import _engine
    by_where = {block.where: block for block in EXAMPLES}
    runs = [(where, engine) for where, engine in _selected_runs(request.session)
            if engine != "compiled" or _engine.available("compiled")]
    workdir = str(tmp_path_factory.mktemp("examples"))
    with concurrent.futures.ThreadPoolExecutor(PARALLEL_EXAMPLES) as pool:
        futures = {}
        for where, engine in runs:
            rundir = os.path.join(workdir, "%d-%s" % (len(futures), engine))
            os.mkdir(rundir)
            futures[where, engine] = pool.submit(run_example, by_where[where], engine, rundir)
        return {key: future.result() for key, future in futures.items()}


@pytest.fixture(params=sorted(ENGINES))
def engine(request):
    if request.param == "compiled":
        from cysocketserver import _engine
        if not _engine.available("compiled"):
            pytest.skip("the compiled engine is not built in this install")
    return request.param


@pytest.mark.skipif(not EXAMPLES, reason="README.md and docs/ are not next to the tests")
@pytest.mark.parametrize("example", EXAMPLES, ids=[block.where for block in EXAMPLES])
def test_example_runs(example, engine, example_results):
    status, output = example_results[example.where, engine]
    if status is None:
        pytest.fail("%s: the example (%s engine) did not finish within %d s:\n%s"
                    % (example.where, engine, EXAMPLE_TIMEOUT, output), pytrace=False)
    if status != 0:
        pytest.fail("%s: the example (%s engine) exited with status %d:\n%s"
                    % (example.where, engine, status, output), pytrace=False)


# -- links --------------------------------------------------------------------------------------


def anchors(path):
    """The anchors a Markdown renderer such as GitHub's makes for the headings of ``path``."""
    made, seen = set(), {}
    for _number, line in split(path)[1]:
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match.group(1))
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        made.add(slug if count == 0 else "%s-%d" % (slug, count))
    return made


def relative_links(path):
    """(line, target) of every link in the prose of ``path`` that stays in this repository."""
    found = []
    for number, line in split(path)[1]:
        reference = REFERENCE.match(line)
        targets = [reference.group(1)] if reference else []
        prose = INLINE_CODE.sub("", line)
        targets += LINK.findall(prose) + IMAGE.findall(prose)
        for target in targets:
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # http:, https:, mailto: ...
            found.append((number, target))
    return found


@pytest.mark.skipif(not documents(), reason="README.md and docs/ are not next to the tests")
@pytest.mark.parametrize("document", documents(), ids=name_of)
def test_relative_links_resolve(document):
    broken = []
    for number, target in relative_links(document):
        file_part, _, anchor = target.partition("#")
        destination = (os.path.normpath(os.path.join(os.path.dirname(document), file_part))
                       if file_part else document)
        where = "%s:%d: %s" % (name_of(document), number, target)
        if not os.path.exists(destination):
            broken.append("%s: no such file" % where)
        elif anchor and (not destination.endswith(".md") or anchor not in anchors(destination)):
            broken.append("%s: no heading makes the anchor #%s" % (where, anchor))
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.skipif(not documents(), reason="README.md and docs/ are not next to the tests")
@pytest.mark.parametrize("document", documents(), ids=name_of)
def test_every_fence_names_its_language(document):
    """An unmarked block could be a Python example that no test runs."""
    unmarked = [block.where for block in split(document)[0] if not block.language]
    assert not unmarked, "fenced blocks without a language (python, sh, console, text): %s" % unmarked


# -- the test command ----------------------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists(README), reason="README.md is not next to the tests")
def test_readme_gives_the_one_test_command_ci_runs():
    commands = [line for block in split(README)[0] for line in block.text.splitlines()
                if "pytest" in line]
    assert len(commands) == 1, "README.md must give exactly one test command, not %r" % commands
    pytest_command = commands[0].split("&&")[-1].strip()
    assert pytest_command == "python -m pytest -q tests"
    if os.path.exists(CI_SCRIPT):
        with open(CI_SCRIPT, encoding="utf-8") as file:
            ci_lines = [line.strip() for line in file]
        assert pytest_command in ci_lines, ".ci/run does not run the README's test command"
