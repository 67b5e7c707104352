"""The pyg-edge distribution's version, in one place that imports nothing.

The runtime (pyg_edge.__version__), the converter (pyg_edge_convert.__version__) and the
build (pyproject.toml reads this file without importing it) all take it from here, so reading
it never imports the runtime, CTranslate2 or tokenizers.
"""

__version__ = "0.2.0"
