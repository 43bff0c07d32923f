"""Runs one of CPython's own test suites against the stdlib's socketserver or against this package.

Usage: python support_cpython_suite.py SUITE {socketserver|cysocketserver|cysocketserver-pool}

SUITE is a module of CPython's ``test`` package (test_socketserver, test_httpservers, ...).
With ``cysocketserver`` the run calls ``cysocketserver.install()`` first thing, before
``test.support`` or the suite is imported, exactly as the README tells users to; then it
checks that nothing the suite imported still holds the stdlib's socketserver classes.

Standalone on purpose (no pytest): it runs in a fresh interpreter so that installing the
package cannot leak into anything else, and it works with any CPython 3.11+ that ships its
``test`` package.

Exit status: 0 all passed, 1 failures, 2 bad usage or the suite still used the stdlib's
classes, 3 the suite could not be imported (the caller skips).  The last line of stdout is a
summary the caller parses:
``SUITE-RESULT ran=N failures=F errors=E skipped=S implementation=I``; before it, one
``SUITE-SKIP count reason`` line per distinct reason a test was skipped.
"""
import collections
import sys
import unittest

UNAVAILABLE = 3
BAD_RUN = 2

# Resources that gate tests, as regrtest's -u option would enable them.  "walltime" tests are
# slow because they wait on timeouts (servers that do not answer): exactly what a server
# package must get right, so they run.  "network" means the internet: it stays off, except
# that test_socketserver guards its whole module (loopback only) with it.
RESOURCES = {"test_socketserver": ["walltime", "network"]}
DEFAULT_RESOURCES = ["walltime"]


def stdlib_leaks(stdlib_module):
    """Names in imported modules that still hold the stdlib's socketserver or its classes."""
    stdlib_classes = {
        obj for obj in vars(stdlib_module).values()
        if isinstance(obj, type) and obj.__module__ == "socketserver"
    }
    leaks = []
    for mod_name, module in list(sys.modules.items()):
        if module is None or mod_name == "__main__":
            continue
        for attr, value in list(vars(module).items()):
            if value is stdlib_module:
                leaks.append(f"{mod_name}.{attr} is the stdlib's socketserver")
            elif isinstance(value, type) and any(base in stdlib_classes for base in value.__mro__):
                leaks.append(f"{mod_name}.{attr} derives from the stdlib's socketserver")
    return leaks


def replace_test_all(suite, module_under_test, stdlib_all):
    # test_socketserver's MiscTestCase.test_all wants every public object to have
    # __module__ == 'socketserver', which a separate package cannot satisfy.  What matters
    # for a drop-in is that the public API is covered.
    def test_all(self):
        missing = set(stdlib_all) - set(module_under_test.__all__)
        self.assertEqual(missing, set(), "names missing from __all__")
        for name in stdlib_all:
            self.assertTrue(isinstance(getattr(module_under_test, name), type), name)

    suite.MiscTestCase.test_all = test_all


def use_pool_for_threading(module):
    """The suite's ThreadingMixIn and Threading* servers become the bounded-pool ones, so that
    it checks ThreadPoolMixIn against the stdlib's contract for a threaded server."""
    for name in list(vars(module)):
        if name.startswith("Threading"):
            pooled = "ThreadPool" + name[len("Threading"):]
            setattr(module, name, getattr(module, pooled))


def main(argv):
    if len(argv) != 3 or argv[2] not in ("socketserver", "cysocketserver", "cysocketserver-pool"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return BAD_RUN
    suite_name, target = argv[1], argv[2]

    import socketserver as stdlib_socketserver

    stdlib_all = list(stdlib_socketserver.__all__)
    implementation = "stdlib"
    if target.startswith("cysocketserver"):
        import cysocketserver

        cysocketserver.install()
        implementation = cysocketserver.IMPLEMENTATION
        if target == "cysocketserver-pool":
            use_pool_for_threading(cysocketserver)
    module_under_test = sys.modules["socketserver"]

    try:
        import test.support
    except ImportError as exc:
        print(f"SUITE-UNAVAILABLE test.support: {exc}")
        return UNAVAILABLE
    test.support.use_resources = RESOURCES.get(suite_name, DEFAULT_RESOURCES)

    try:
        suite = __import__(f"test.{suite_name}", fromlist=["*"])
    except unittest.SkipTest as exc:
        print(f"SUITE-UNAVAILABLE skipped at import: {exc}")
        return UNAVAILABLE
    except ImportError as exc:
        print(f"SUITE-UNAVAILABLE test.{suite_name}: {exc}")
        return UNAVAILABLE

    if target.startswith("cysocketserver"):
        leaks = stdlib_leaks(stdlib_socketserver)
        if leaks:
            print("the suite runs on the stdlib's socketserver:", *leaks, sep="\n  ", file=sys.stderr)
            return BAD_RUN
        if suite_name == "test_socketserver":
            replace_test_all(suite, module_under_test, stdlib_all)

    tests = unittest.defaultTestLoader.loadTestsFromModule(suite)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(tests)
    sys.stderr.flush()
    reasons = collections.Counter(reason for _test, reason in result.skipped)
    for reason, count in sorted(reasons.items()):
        print(f"SUITE-SKIP {count} {' '.join(reason.split())}")
    print(
        "SUITE-RESULT ran=%d failures=%d errors=%d skipped=%d implementation=%s"
        % (
            result.testsRun,
            len(result.failures) + len(result.unexpectedSuccesses),
            len(result.errors),
            len(result.skipped),
            implementation,
        )
    )
    sys.stdout.flush()
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
