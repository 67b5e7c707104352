"""pyg-edge's local HTTP server for chat frontends: KoboldAI, KoboldCpp, OpenAI-style,
text-generation-webui and llama.cpp-style routes, and a web chat page. A thin layer over
the library's calls (pyg_edge.chat.completions).

Needs the `server` extra (aiohttp): pip install 'pyg-edge[server]'.
"""

from pyg_edge.server.app import create_app, serve
from pyg_edge.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "serve"]
