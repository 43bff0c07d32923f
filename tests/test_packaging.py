"""What a wheel built from this tree contains: every subpackage of the source."""
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project needs 3.11, but say why rather than fail to import
    tomllib = None


@pytest.mark.skipif(tomllib is None, reason="tomllib needs Python 3.11")
@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, "pyproject.toml")),
                    reason="no source tree (testing an installed package)")
def test_every_subpackage_is_listed_for_the_wheel():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        listed = set(tomllib.load(f)["tool"]["setuptools"]["packages"])
    source = os.path.join(ROOT, "src")
    found = set()
    for folder, _dirs, files in os.walk(os.path.join(source, "cysocketserver")):
        if "__init__.py" in files:
            found.add(os.path.relpath(folder, source).replace(os.sep, "."))
    assert found == listed
