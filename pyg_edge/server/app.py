"""The aiohttp application: each API's routes behind the middleware (API key, JSON errors,
bounded connections)."""

import asyncio
import logging
import os
from dataclasses import replace

from aiohttp import web

from pyg_edge.chat.completions import Completions
from pyg_edge.generation.model import PygModel
from pyg_edge.server import kobold, koboldcpp, llamacpp, openai, textgen, webchat
from pyg_edge.server.browser_guard import check_host_and_body_type, exposure_warnings
from pyg_edge.server.common import COMPLETIONS, GENERATIONS, MODEL, NAME, SETTINGS
from pyg_edge.server.connections import (
    QuietAcceptErrors,
    bounded_io,
    quiet_bad_request_logs,
    raise_open_file_limit,
    runner_options,
)
from pyg_edge.server.cors import add_allow_origin, answer_preflight, check_origins
from pyg_edge.server.generations import Generations
from pyg_edge.server.middleware import errors_as_json, require_key
from pyg_edge.server.settings import ServerSettings

logger = logging.getLogger("pyg_edge")

__all__ = ["create_app", "runner_options", "serve"]


def create_app(model: PygModel, settings: ServerSettings | None = None) -> web.Application:
    """Builds the server around a loaded model.

    Args:
      model: The PygModel every request uses, one generation at a time.
      settings: The server's options (ServerSettings(): the defaults).

    Raises:
      ValueError: a CORS origin is not one.
    """
    settings = settings or ServerSettings()
    settings = replace(settings, cors_origins=check_origins(settings.cors_origins),
                       allowed_hosts=tuple(h.lower() for h in settings.allowed_hosts))
    app = web.Application(middlewares=[errors_as_json, check_host_and_body_type,
                                       answer_preflight, require_key, bounded_io],
                          client_max_size=settings.max_body_bytes)
    app.on_response_prepare.append(add_allow_origin)
    app[MODEL] = model
    app[SETTINGS] = settings
    app[COMPLETIONS] = Completions(model, settings.prefix_cache, settings.smart_context)
    app[GENERATIONS] = Generations()
    app[NAME] = "pyg-edge/" + os.path.basename(os.path.normpath(model.path))
    for api in (kobold, koboldcpp, openai, textgen, llamacpp, webchat):
        app.add_routes(api.routes)

    async def stop_generations(app):
        app[GENERATIONS].close()

    app.on_cleanup.append(stop_generations)
    return app


def serve(model_path: str, settings: ServerSettings | None = None, **model_options) -> None:
    """Loads a model and serves it until interrupted.

    Args:
      model_path: A converted model folder.
      settings: The server's options.
      **model_options: PygModel's (device, compute_type, cpu_threads, ...).
    """
    settings = settings or ServerSettings()
    for warning in exposure_warnings(settings):
        logger.warning(warning)
    if "*" in settings.cors_origins and not settings.api_key:
        logger.warning("any web page this browser opens may use the model (--cors-origin '*' "
                       "without an API key)")
    raise_open_file_limit()
    quiet_bad_request_logs()

    async def quiet_accept_errors(app):
        asyncio.get_running_loop().set_exception_handler(QuietAcceptErrors())

    with PygModel(model_path, **model_options) as model:
        app = create_app(model, settings)
        app.on_startup.append(quiet_accept_errors)
        web.run_app(app, host=settings.host, port=settings.port,
                    **runner_options(settings))
