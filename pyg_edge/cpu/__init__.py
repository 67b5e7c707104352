"""Everything process-wide and platform-specific: the int8 GEMM backend, its self-test, heap
and copy settings, and `pyg-edge info`. An app calls prepare() once, at its start."""

from pyg_edge.cpu.setup import Prepared, prepare

__all__ = ["Prepared", "prepare"]
