"""The one exception the converter raises for anything wrong with its input or output.

It is pyg_edge.errors.ConversionError, so an app catches it as a PygEdgeError too.
"""

from pyg_edge.errors import ConversionError

__all__ = ["ConversionError"]
