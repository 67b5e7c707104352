"""pyg-edge's converter: Hugging Face gpt-neo checkpoints to CTranslate2 models, without torch.

It imports neither the runtime nor CTranslate2, so it runs where the runtime is not installed.
"""

from pyg_edge_convert.convert import QUANTIZATIONS, ConversionSummary, convert_checkpoint
from pyg_edge_convert.errors import ConversionError

__version__ = "0.2.0"

__all__ = [
    "QUANTIZATIONS",
    "ConversionError",
    "ConversionSummary",
    "convert_checkpoint",
    "__version__",
]
