"""pyg-edge: run Pygmalion (gpt-neo) dialogue models with CTranslate2 on ordinary machines."""

from pyg_edge.characters import Character, load_character
from pyg_edge.chat import ChatSession
from pyg_edge.errors import (
    CharacterError,
    ChatFileError,
    ModelLoadError,
    PromptTooLongError,
    PygEdgeError,
)
from pyg_edge.generation_stats import GenerationStats
from pyg_edge.model import PygModel
from pyg_edge.prompt import Message, Prompt, build_prompt
from pyg_edge.replies import Replies
from pyg_edge.sampling import SamplingOptions

__version__ = "0.2.0"

__all__ = [
    "Character",
    "CharacterError",
    "ChatFileError",
    "ChatSession",
    "GenerationStats",
    "Message",
    "ModelLoadError",
    "Prompt",
    "PromptTooLongError",
    "PygEdgeError",
    "PygModel",
    "Replies",
    "SamplingOptions",
    "build_prompt",
    "load_character",
    "__version__",
]
