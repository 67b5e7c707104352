"""pyg-edge's local HTTP server for chat frontends: KoboldAI, KoboldCpp, OpenAI-style,
text-generation-webui and llama.cpp-style routes, and a web chat page.

Needs the `server` extra (aiohttp): pip install 'pyg-edge[server]'.
"""

from pyg_edge.server.app import create_app, serve

__all__ = ["create_app", "serve"]
