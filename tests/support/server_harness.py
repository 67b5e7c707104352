"""Runs the real pyg-edge server on a free loopback port in a background thread, for tests."""

import asyncio
import http.client
import json
import socket
import threading

from aiohttp import web

from pyg_edge.server import ServerSettings, create_app
from pyg_edge.server.connections import runner_options


class RunningServer:
    """The app served on 127.0.0.1:port from its own event loop thread."""

    def __init__(self, model, **settings):
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(model, settings), daemon=True)
        self._thread.start()
        self._ready.wait(timeout=30)

    def _run(self, model, settings):
        asyncio.set_event_loop(self._loop)
        self.settings = ServerSettings(**settings)
        self.app = create_app(model, self.settings)
        self._runner = web.AppRunner(self.app, **runner_options(self.settings))
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        self._loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    def stop(self):
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def request(self, method, path, body=None, headers=None, raw=None):
        """Returns (status, parsed JSON or text)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        if body is not None and raw is None:  # as every client sends a JSON body
            headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        text = response.read().decode("utf-8")
        connection.close()
        try:
            return response.status, json.loads(text)
        except json.JSONDecodeError:
            return response.status, text

    def named_events(self, path, body, headers=None):
        """POSTs and reads server-sent events; returns (event name or None, data) pairs."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("POST", path, body=json.dumps(body),
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        events, name = [], None
        for line in response.read().decode("utf-8").split("\n"):
            if line.startswith("event: "):
                name = line[len("event: "):]
            elif line.startswith("data: "):
                data = line[len("data: "):]
                events.append((name, data if data == "[DONE]" else json.loads(data)))
                name = None
        connection.close()
        return events

    def events(self, path, body, headers=None, stop_after=None):
        """POSTs and reads server-sent events; returns the list of data payloads."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        connection.request("POST", path, body=json.dumps(body),
                           headers={"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        assert response.status == 200, response.read()
        assert response.getheader("Content-Type").startswith("text/event-stream")
        payloads = []
        for line in response:
            line = line.decode("utf-8").rstrip("\n")
            if line.startswith("data: "):
                data = line[len("data: "):]
                payloads.append(data if data == "[DONE]" else json.loads(data))
                if stop_after and len(payloads) >= stop_after:
                    break
        connection.close()
        return payloads


class RecordingModel:
    """A model that remembers the prompt and options of its latest generation."""

    def __init__(self, model):
        self._model = model
        self.prompt = self.options = None

    def __getattr__(self, name):
        return getattr(self._model, name)

    def stream(self, prompt, options=None, plan=None, **kwargs):
        def recorded(cached):
            self.prompt, static_tokens = plan(cached) if plan else (prompt, 0)
            return self.prompt, static_tokens

        self.prompt, self.options = prompt, options
        return self._model.stream(prompt, options, plan=recorded, **kwargs)


# The server the client contract tests (test_server_*_clients.py) talk to: the demo model,
# recorded, behind --max-length CLIENT_MAX_LENGTH (fixtures `recording` and `server` in
# conftest.py, one server per test module).
CLIENT_MAX_LENGTH = 100


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
