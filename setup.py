"""Builds the compiled modules of cysocketserver from the Cython sources in ext/."""
import os

from Cython.Build import cythonize
from setuptools import Extension, setup

EXT_DIR = "ext"
MODULES = ["_poller", "_loop", "_streams", "_loadgen"]


def extensions():
    # Developers may rebuild a subset while another module is mid-edit.
    only = os.environ.get("CYSOCKETSERVER_BUILD_ONLY")
    names = only.split(",") if only else MODULES
    return [
        Extension(
            f"cysocketserver.{name}",
            [os.path.join(EXT_DIR, "cysocketserver", f"{name}.pyx")],
            include_dirs=[os.path.join(EXT_DIR, "cysocketserver")],
        )
        for name in names
    ]


setup(
    ext_modules=cythonize(
        extensions(),
        include_path=[EXT_DIR],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
        },
    ),
)
