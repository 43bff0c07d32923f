"""Runs CPython's own test.test_socketserver against a chosen implementation.

Usage: python support_cpython_suite.py {socketserver|cysocketserver}

Standalone on purpose (no pytest): it runs in a fresh interpreter so that
replacing ``sys.modules['socketserver']`` cannot leak into anything else, and
it works with any CPython 3.11+ that ships its ``test`` package.

Exit status: 0 all passed, 1 failures, 3 the suite could not be imported
(the caller skips).  The last line of stdout is a summary the caller parses:
``SUITE-RESULT ran=N failures=F errors=E skipped=S implementation=I``.
"""
import sys
import unittest

UNAVAILABLE = 3


def main(argv):
    target = argv[1] if len(argv) > 1 else "cysocketserver"
    if target not in ("socketserver", "cysocketserver"):
        print(f"unknown target {target!r}", file=sys.stderr)
        return 2

    import socketserver as stdlib_socketserver

    stdlib_all = list(stdlib_socketserver.__all__)
    implementation = "stdlib"
    if target == "cysocketserver":
        import cysocketserver

        implementation = cysocketserver.IMPLEMENTATION
        sys.modules["socketserver"] = cysocketserver
    module_under_test = sys.modules["socketserver"]

    try:
        import test.support
    except ImportError as exc:
        print(f"SUITE-UNAVAILABLE test.support: {exc}")
        return UNAVAILABLE
    # Outside regrtest use_resources is None (everything enabled); be explicit
    # so requires("network") passes however test.support was configured.
    if test.support.use_resources is not None:
        test.support.use_resources = list(test.support.use_resources) + ["network"]
    else:
        test.support.use_resources = ["network"]

    try:
        import test.test_socketserver as suite
    except unittest.SkipTest as exc:
        print(f"SUITE-UNAVAILABLE skipped at import: {exc}")
        return UNAVAILABLE
    except ImportError as exc:
        print(f"SUITE-UNAVAILABLE test.test_socketserver: {exc}")
        return UNAVAILABLE

    if suite.socketserver is not module_under_test:
        print("the suite did not pick up the module under test", file=sys.stderr)
        return 1

    if target == "cysocketserver":
        # The original checks that every public object has
        # __module__ == 'socketserver', which a separate package cannot satisfy.
        # What matters for a drop-in is that the public API is covered.
        def test_all(self):
            missing = set(stdlib_all) - set(module_under_test.__all__)
            self.assertEqual(missing, set(), "names missing from __all__")
            for name in stdlib_all:
                self.assertTrue(isinstance(getattr(module_under_test, name), type), name)

        suite.MiscTestCase.test_all = test_all

    tests = unittest.defaultTestLoader.loadTestsFromModule(suite)
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=2).run(tests)
    sys.stderr.flush()
    print(
        "SUITE-RESULT ran=%d failures=%d errors=%d skipped=%d implementation=%s"
        % (
            result.testsRun,
            len(result.failures),
            len(result.errors),
            len(result.skipped),
            implementation,
        )
    )
    sys.stdout.flush()
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
