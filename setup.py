"""Builds the compiled modules of cysocketserver from the Cython sources in ext/."""
import os
import sys

from setuptools import Extension, setup

EXT_DIR = "ext"
MODULES = ["_counters", "_poller", "_loop", "_streams", "_loadgen", "_hub", "_proxyproto",
           "_relay", "_clienthello"]
# Compiled from their Python source in the package, typed by the .pxd beside it (Cython's pure
# Python mode); the others from ext/cysocketserver/<name>.pyx.
FROM_PYTHON = {"_proxyproto", "_clienthello"}


def source(name):
    if name in FROM_PYTHON:
        return os.path.join("src", "cysocketserver", f"{name}.py")
    return os.path.join(EXT_DIR, "cysocketserver", f"{name}.pyx")


def want_extensions():
    # CYSOCKETSERVER_NO_EXTENSIONS=1 at build time gives a pure-Python wheel; at run time the
    # same variable makes an install with compiled modules use the pure engine.
    if os.environ.get("CYSOCKETSERVER_NO_EXTENSIONS"):
        return False
    # The extensions are written against CPython's C API; PyPy and GraalPy get the pure engine.
    return sys.implementation.name == "cpython"


def extensions():
    if not want_extensions():
        return []
    from Cython.Build import cythonize

    # Developers may rebuild a subset while another module is mid-edit.
    only = os.environ.get("CYSOCKETSERVER_BUILD_ONLY")
    names = only.split(",") if only else MODULES
    # CYSOCKETSERVER_PORTABLE=1 builds the code paths of macOS and the BSDs (poll() and a
    # wake-up pipe instead of epoll and eventfd, accept() instead of accept4(), plain poll()
    # in the streams) so that they can be tested on Linux.
    macros = [("CYS_PORTABLE", "1"), ("CYSS_HAVE_PPOLL", "0")] if os.environ.get("CYSOCKETSERVER_PORTABLE") else []
    return cythonize(
        [
            Extension(
                f"cysocketserver.{name}",
                [source(name)],
                include_dirs=[os.path.join(EXT_DIR, "cysocketserver")],
                define_macros=macros,
            )
            for name in names
        ],
        include_path=[EXT_DIR],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            # The modules rely on the GIL; free-threaded builds are left out of the wheel matrix.
            "freethreading_compatible": False,
        },
    )


# The .pxd beside a Python source is for the compiler: the sdist ships it (MANIFEST.in), wheels
# do not.
setup(ext_modules=extensions(), exclude_package_data={"cysocketserver": ["*.pxd"]})
