"""`pyg-edge serve`'s flags and ServerSettings are one list of options with one set of defaults."""

import dataclasses

from click.testing import CliRunner

import pyg_edge.server
from pyg_edge.cli import main
from pyg_edge.server import ServerSettings

# the model's flags
MODEL_FLAGS = {"model_path", "device", "compute_type", "threads", "allow_inexact", "gemm"}
NOT_FLAGS = {"defaults"}  # sampling defaults come from SamplingOptions


def test_every_server_setting_is_a_serve_flag_with_the_same_default():
    params = {p.name: p for p in main.commands["serve"].params if p.name not in MODEL_FLAGS}
    fields = {f.name: f for f in dataclasses.fields(ServerSettings) if f.name not in NOT_FLAGS}
    assert set(params) == set(fields)
    defaults = ServerSettings()
    for name, param in params.items():
        default = param.default
        if param.multiple:  # no default given: click leaves a marker, and passes ()
            default = tuple(default) if isinstance(default, (list, tuple)) else ()
        assert default == getattr(defaults, name), name


def test_serve_hands_its_flags_to_the_server_as_settings(monkeypatch, tmp_path):
    served = []
    monkeypatch.setattr(pyg_edge.server, "serve", lambda path, settings, **kw: served.append(
        (settings, kw)))
    result = CliRunner().invoke(main, ["serve", str(tmp_path), "--port", "6000", "--max-length",
                                       "64", "--replies", "2", "--no-prefix-cache",
                                       "--smart-context", "0.5", "--threads", "1",
                                       "--allow-inexact"])
    assert result.exit_code == 0, result.output
    settings, model_options = served[0]
    assert settings == ServerSettings(port=6000, max_length=64, replies=2, prefix_cache=False,
                                      smart_context=0.5)
    assert model_options["cpu_threads"] == 1
    assert model_options["allow_inexact"] is True


def test_serve_flags_take_their_help_from_the_settings_fields():
    params = {p.name: p for p in main.commands["serve"].params}
    for setting in dataclasses.fields(ServerSettings):
        if setting.name not in NOT_FLAGS:
            assert params[setting.name].help == setting.metadata["help"], setting.name


def test_the_settings_import_without_aiohttp():
    import subprocess
    import sys

    code = ("import sys; sys.modules['aiohttp'] = None\n"
            "from pyg_edge.server import ServerSettings; import pyg_edge.cli\n"
            "print(ServerSettings().max_stops)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "32", done.stderr
