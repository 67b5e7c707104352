"""pyg-edge's converter: Hugging Face gpt-neo checkpoints to CTranslate2 models, without torch.

It imports neither the runtime, CTranslate2 nor tokenizers, so `import pyg_edge_convert` works
where only numpy is installed; converting needs tokenizers (for the tokenizer files).
"""

from pyg_edge_convert.convert import QUANTIZATIONS, ConversionSummary, convert_checkpoint
from pyg_edge_convert.errors import ConversionError
from pyg_edge_convert.version import __version__

__all__ = [
    "QUANTIZATIONS",
    "ConversionError",
    "ConversionSummary",
    "convert_checkpoint",
    "__version__",
]
