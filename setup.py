"""Build of the optional C extension `chronotick._fastread`; everything else is in pyproject.toml.

The extension is `optional`: where it cannot be compiled (no compiler, no Python headers, a
big-endian machine) the install still succeeds and ChronoTickClient reads in pure Python.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "chronotick._fastread",
            sources=["chronotick/_fastread.c"],
            # the arithmetic must round like Python's: no fused multiply-add, no fast-math
            extra_compile_args=["-O2", "-ffp-contract=off", "-fno-fast-math"],
            optional=True,
        )
    ],
)
