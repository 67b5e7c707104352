"""The exceptions pyg-edge raises for things a user can cause; the CLI prints them as one line."""


class PygEdgeError(Exception):
    """Base class: the message is one line a user can act on."""


class ModelLoadError(PygEdgeError):
    """A model folder is missing, incomplete or cannot run on the asked device."""


class CharacterError(PygEdgeError):
    """A character card cannot be read."""


class ChatFileError(PygEdgeError):
    """A saved chat cannot be read or written."""


class PromptTooLongError(PygEdgeError):
    """A prompt cannot fit in the model's context with the tokens asked for."""
