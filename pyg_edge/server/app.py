"""The aiohttp application: each API's routes behind the middleware (API key, JSON errors)."""

import ipaddress
import logging
import os

from aiohttp import web

from pyg_edge.chat.smart_context import DEFAULT_FRACTION
from pyg_edge.generation.model import PygModel
from pyg_edge.generation.sampling import SamplingOptions
from pyg_edge.server import kobold, koboldcpp, llamacpp, openai, textgen, webchat
from pyg_edge.server.common import MODEL, QUEUE, SETTINGS
from pyg_edge.server.cors import add_allow_origin, answer_preflight, check_origins
from pyg_edge.server.engine import GenerationQueue
from pyg_edge.server.middleware import errors_as_json, require_key

logger = logging.getLogger("pyg_edge")

MAX_BODY_BYTES = 2 * 1024 * 1024  # a long chat plus a PNG card fit; more is refused (413)


def create_app(model: PygModel, api_key: str = "", max_length: int = 512,
               defaults: SamplingOptions = None, replies: int = 1,
               cors_origins=(), reuse_prefixes: bool = True,
               smart_context: float = DEFAULT_FRACTION) -> web.Application:
    """Builds the server around a loaded model.

    Args:
      model: The PygModel every request uses, one generation at a time.
      api_key: When set, every API request needs it (Authorization: Bearer KEY).
      max_length: The most new tokens one request may ask for.
      defaults: Sampling options for fields a request leaves out.
      replies: Replies the web chat page samples per turn; the extras make its
        Regenerate instant.
      cors_origins: Origins whose browser pages may call the API ("*": any); none by
        default (pyg_edge.server.cors).
      reuse_prefixes: Cache raw prompts' prefixes across requests (pyg_edge.chat.prefix_planner);
        False saves the memory of a cached prompt and reads every prompt in full.
      smart_context: The share of the history that a chat whose context is full keeps
        in front of the model (pyg_edge.chat.smart_context); 0 reads what the client sends.

    Raises:
      ValueError: a CORS origin is not one.
    """
    app = web.Application(middlewares=[errors_as_json, answer_preflight, require_key],
                          client_max_size=MAX_BODY_BYTES)
    app.on_response_prepare.append(add_allow_origin)
    app[MODEL] = model
    app[QUEUE] = GenerationQueue(model, reuse_prefixes, smart_context)
    app[SETTINGS] = {"api_key": api_key, "max_length": max_length,
                     "defaults": defaults or SamplingOptions(), "replies": replies,
                     "cors_origins": check_origins(cors_origins),
                     "name": "pyg-edge/" + os.path.basename(os.path.normpath(model.path))}
    for api in (kobold, koboldcpp, openai, textgen, llamacpp, webchat):
        app.add_routes(api.routes)

    async def close_queue(app):
        app[QUEUE].close()

    app.on_cleanup.append(close_queue)
    return app


def serve(model_path: str, host: str = "127.0.0.1", port: int = 5001, api_key: str = "",
          max_length: int = 512, replies: int = 1, cors_origins=(), reuse_prefixes: bool = True,
          smart_context: float = DEFAULT_FRACTION, **model_options) -> None:
    """Loads a model and serves it until interrupted."""
    if not _is_loopback(host) and not api_key:
        logger.warning("serving on %s without an API key: anyone who reaches it can use it", host)
    if "*" in cors_origins and not api_key:
        logger.warning("any web page this browser opens may use the model (--cors-origin '*' "
                       "without an API key)")
    with PygModel(model_path, **model_options) as model:
        app = create_app(model, api_key, max_length, replies=replies, cors_origins=cors_origins,
                         reuse_prefixes=reuse_prefixes, smart_context=smart_context)
        web.run_app(app, host=host, port=port)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
