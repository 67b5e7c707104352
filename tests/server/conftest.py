"""The server lane: the demo model behind a running server, for the client contract tests."""

import pytest

from support.server_harness import CLIENT_MAX_LENGTH, RecordingModel, RunningServer


@pytest.fixture(scope="module")
def recording(demo_pyg_model):
    """The demo model, recording what the client contract tests' requests made of it."""
    return RecordingModel(demo_pyg_model)


@pytest.fixture(scope="module")
def server(recording):
    """A running server on `recording` for one test module (test_server.py has its own)."""
    from pyg_edge.generation.sampling import SamplingOptions

    running = RunningServer(recording, max_length=CLIENT_MAX_LENGTH,
                            defaults=SamplingOptions(max_new_tokens=40))
    yield running
    running.stop()
