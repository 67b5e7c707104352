"""pyg-edge's local HTTP server for chat frontends: KoboldAI, KoboldCpp, OpenAI-style,
text-generation-webui and llama.cpp-style routes, and a web chat page. A thin layer over
the library's calls (pyg_edge.chat.completions).

Needs the `server` extra (aiohttp): pip install 'pyg-edge[server]'. ServerSettings alone
imports without it (the CLI builds `serve`'s flags from it).
"""

from pyg_edge.server.settings import ServerSettings

__all__ = ["ServerSettings", "create_app", "serve"]


def __getattr__(name):
    # aiohttp is imported on first use of the app, so the settings import without it.
    if name in ("create_app", "serve"):
        from pyg_edge.server import app

        return getattr(app, name)
    raise AttributeError(f"module 'pyg_edge.server' has no attribute {name!r}")
