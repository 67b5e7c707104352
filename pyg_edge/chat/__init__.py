"""The chat domain: cards, prompts, chat sessions, smart context and prefix planning.

Shared by the CLI, the server and apps; nothing here talks to CTranslate2 directly.
"""

from pyg_edge.chat.session import ChatSession

__all__ = ["ChatSession"]
