"""The optional C extension; everything else is in pyproject.toml.

pyg_edge/cpu/native/mkl_shim.c is built on x86-64 Linux only, and a failed build (no C
compiler) still installs pyg-edge, which then runs CTranslate2's default GEMM backend.
"""

import platform

from setuptools import Extension, setup

extensions = []
if platform.system() == "Linux" and platform.machine().lower() in ("x86_64", "amd64"):
    extensions.append(Extension(
        "pyg_edge.cpu._mkl_shim",
        sources=["pyg_edge/cpu/native/mkl_shim.c", "pyg_edge/cpu/native/nt_copy.c",
                 "pyg_edge/cpu/native/got.c", "pyg_edge/cpu/native/block_cache.c"],
        extra_compile_args=["-O2", "-fvisibility=default"],
        libraries=["dl"],
        optional=True,
    ))

setup(ext_modules=extensions)
