"""Build the compiled matching core (``venue/core/engine.pyx``, Cython); everything else is in
pyproject.toml. ``pip install -e .`` (bin/setup-env) builds it in place."""

from Cython.Build import cythonize
from setuptools import Extension, setup

setup(
    ext_modules=cythonize(
        [Extension("venue.core.engine", ["venue/core/engine.pyx"])],
        compiler_directives={"language_level": "3", "embedsignature": True},
        quiet=True,
    ),
)
