"""Build shim: everything is in pyproject.toml except the package list.

The recipes stay in the top-level ``configs/`` folder and are installed as the
package ``jaxgan.configs`` (``jaxgan train --config cyclegan_demo`` finds them
wherever jaxgan is installed); pyproject's ``packages.find`` cannot add a package
from another folder, so the list is jaxgan's own packages, found, plus that one.
"""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["jaxgan", "jaxgan.*"]), "jaxgan.configs"],
      package_dir={"jaxgan.configs": "configs"})
