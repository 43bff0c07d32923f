"""The package's layers import one way, in the order a request travels, and no import closes a
circle.

    engine -> core -> dispatch models -> public classes -> the package's front -> services

A module may import from its own layer and the layers before it, never from a later one.  The
front (``cysocketserver/__init__.py``) gathers the public names, some of them loaded on first
use; the services (command line, metrics endpoint, prefork, bench) use the package as a
program would, through its front or its modules.  Every
import counts: at module level or inside a function, in the Python sources and in the Cython
sources (``.pyx``, ``.pxd``).  A failure names the file and line of each import at fault.

Run it as a script to print the report for any tree: ``python tests/test_layers.py [ROOT]``.
"""
import ast
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "cysocketserver"

LAYERS = ("engine", "core", "models", "public", "front", "services")

# Top-level modules by layer; everything under a subpackage takes the subpackage's layer.  A
# private top-level module (``_loop``, ``_pure_hub``, ``_proxycommon``...) is engine unless
# listed here.
_TOP_LEVEL = {
    "threadpool": "models",
    "servers": "public", "mixins": "public", "handlers": "public", "greenlets": "public",
    "activation": "public", "proxyprotocol": "public", "prometheus": "public",
    "relaying": "public",
    "metrics": "services", "service": "services", "__main__": "services",
    "_loadgen": "services",   # the bench's compiled load client
}
_SUBPACKAGES = {
    "includes": "engine",
    "core": "core",
    # The greenlet model's runtime (each thread's hub, the cooperative socket, to_thread, the
    # loop's waiter) is part of the dispatch models; its servers are public classes.
    "models": "models", "green": "models",
    "cli": "services", "prefork": "services", "bench": "services", "proxy": "services",
}
# Modules of a subpackage whose layer is not the subpackage's.
_MODULES = {"cysocketserver.green.servers": "public"}


def layer_of(module):
    """The layer of ``cysocketserver[.x[.y]]``; None outside the package."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        return "front"
    if module in _MODULES:
        return _MODULES[module]
    name = parts[1]
    if len(parts) > 2 or name in _SUBPACKAGES:
        if name not in _SUBPACKAGES:
            raise ValueError("no layer for the subpackage of %s: add it to _SUBPACKAGES" % module)
        return _SUBPACKAGES[name]
    if name in _TOP_LEVEL:
        return _TOP_LEVEL[name]
    if name.startswith("_"):
        return "engine"
    raise ValueError("no layer for %s: add it to _TOP_LEVEL in tests/test_layers.py" % module)


# -- reading the sources --------------------------------------------------------------------------

def _sources(root):
    """(module name, path, kind) of every source of the package under ``root``."""
    for base, kinds in ((os.path.join(root, "src", PACKAGE), (".py",)),
                        (os.path.join(root, "ext", PACKAGE), (".pyx", ".pxd"))):
        for folder, _dirs, files in os.walk(base):
            if "__pycache__" in folder:
                continue
            for filename in sorted(files):
                stem, ext = os.path.splitext(filename)
                if ext not in kinds:
                    continue
                rel = os.path.relpath(os.path.join(folder, stem), base).split(os.sep)
                if rel[-1] == "__init__":
                    rel = rel[:-1]
                yield ".".join([PACKAGE] + rel), os.path.join(folder, filename), ext


def _is_package(path):
    return os.path.basename(path).startswith("__init__.")


def _resolve(importer, is_package, level, target):
    if not level:
        return target
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _python_imports(module, path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    package = _is_package(path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, package, node.level, node.module)
            yield node.lineno, target, tuple(alias.name for alias in node.names)


_CYTHON_FROM = re.compile(r"^\s*from\s+([\w.]+)\s+c?import\s+\(?\s*([\w\s,*]*)")
_CYTHON_IMPORT = re.compile(r"^\s*c?import\s+([\w.]+)")


def _cython_imports(module, path):
    in_string = False
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            # Skip docstrings: a line that opens or closes one toggles the state.
            if line.count('"""') % 2 == 1:
                in_string = not in_string
                continue
            if in_string or line.lstrip().startswith("#"):
                continue
            match = _CYTHON_FROM.match(line)
            if match:
                names = tuple(n.strip() for n in match.group(2).split(",") if n.strip())
                yield lineno, match.group(1), names
                continue
            match = _CYTHON_IMPORT.match(line)
            if match:
                yield lineno, match.group(1), ()


def import_edges(root=ROOT):
    """(importer, imported module, path, line) for every import of a package module."""
    sources = list(_sources(root))
    modules = {name for name, _path, _kind in sources}
    edges = []
    for module, path, kind in sources:
        reader = _python_imports if kind == ".py" else _cython_imports
        for lineno, target, names in reader(module, path):
            if not target or layer_of(target) is None:
                continue
            # ``from pkg import name``: the module pkg.name where there is one.
            targets = [f"{target}.{name}" if f"{target}.{name}" in modules else target
                       for name in names] or [target]
            for imported in dict.fromkeys(targets):
                if imported != module:
                    edges.append((module, imported, os.path.relpath(path, root), lineno))
    return edges


# -- the rules ------------------------------------------------------------------------------------

def against_the_order(edges):
    """Lines of imports from a later layer."""
    faults = []
    for importer, imported, path, lineno in edges:
        mine, theirs = layer_of(importer), layer_of(imported)
        if LAYERS.index(theirs) > LAYERS.index(mine):
            faults.append(f"{path}:{lineno}: {importer} ({mine}) imports {imported} ({theirs})")
    return faults


def circles(edges):
    """Each import circle (a strongly connected set of modules), with the lines that close it."""
    graph = {}
    for importer, imported, _path, _lineno in edges:
        graph.setdefault(importer, set()).add(imported)
        graph.setdefault(imported, set())
    # Tarjan's algorithm, iteratively.
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                members = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    members.add(member)
                    if member == node:
                        break
                if len(members) > 1:
                    found.append(members)
    reports = []
    for members in found:
        lines = sorted(f"  {path}:{lineno}: {importer} imports {imported}"
                       for importer, imported, path, lineno in edges
                       if importer in members and imported in members)
        reports.append("a circle of %d modules (%s):\n%s"
                       % (len(members), ", ".join(sorted(members)), "\n".join(lines)))
    return reports


# -- the tests ------------------------------------------------------------------------------------

def test_every_module_has_a_layer():
    for module, _path, _kind in _sources(ROOT):
        assert layer_of(module) in LAYERS


def test_the_reader_sees_imports_at_every_level():
    edges = {(a, b) for a, b, _path, _line in import_edges()}
    # A module-level import, a Cython cimport, and the lazy imports of the package's front.
    assert ("cysocketserver.servers", "cysocketserver.core.plan") in edges
    assert ("cysocketserver._streams", "cysocketserver._hub") in edges


def test_layers_import_one_way():
    faults = against_the_order(import_edges())
    assert not faults, "imports against the order of the layers:\n" + "\n".join(faults)


def test_no_import_closes_a_circle():
    reports = circles(import_edges())
    assert not reports, "\n".join(reports)


def test_a_violation_is_named_by_file_and_line():
    edges = [("cysocketserver.core.plan", "cysocketserver.mixins", "src/x.py", 7),
             ("cysocketserver.mixins", "cysocketserver.core.plan", "src/y.py", 3)]
    assert against_the_order(edges) == [
        "src/x.py:7: cysocketserver.core.plan (core) imports cysocketserver.mixins (public)"]
    (report,) = circles(edges)
    assert "src/x.py:7" in report and "src/y.py:3" in report


if __name__ == "__main__":
    root = sys.argv[1] if len(sys.argv) > 1 else ROOT
    edges = import_edges(root)
    order, rings = against_the_order(edges), circles(edges)
    print("%d imports of package modules read under %s" % (len(edges), root))
    print("%d against the order of the layers%s" % (len(order), ":" if order else ""))
    for line in order:
        print("  " + line)
    print("%d import circle(s)%s" % (len(rings), ":" if rings else ""))
    for report in rings:
        print(report)
    sys.exit(1 if order or rings else 0)
