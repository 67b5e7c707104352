"""pyg-edge: run Pygmalion (gpt-neo) dialogue models with CTranslate2 on ordinary machines."""

from pyg_edge.chat.characters import Character, load_character
from pyg_edge.chat.prompt import Message, Prompt, build_prompt
from pyg_edge.chat.session import ChatSession
from pyg_edge.errors import (
    CharacterError,
    ChatFileError,
    ModelLoadError,
    PromptTooLongError,
    PygEdgeError,
)
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.replies import Replies
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.generation.stats import GenerationStats

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
