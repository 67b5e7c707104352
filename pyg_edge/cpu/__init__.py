"""Everything process-wide and platform-specific: the int8 GEMM backend, its self-test, heap
and copy settings, and `pyg-edge info`."""
