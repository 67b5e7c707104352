"""The one exception the converter raises for anything wrong with its input or output.

PygEdgeError, the root of every error pyg-edge raises, is defined here rather than in
pyg_edge.errors: the converter imports nothing of the runtime (it runs where tokenizers and
CTranslate2 are not installed), while the runtime can import this module. pyg_edge.errors
re-exports both, so ConversionError is a PygEdgeError wherever an app catches it.
"""

__all__ = ["ConversionError", "PygEdgeError"]


class PygEdgeError(Exception):
    """Base class: the message is one line a user can act on."""


class ConversionError(PygEdgeError):
    """A conversion cannot go on (pyg_edge_convert raises it)."""
