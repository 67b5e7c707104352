"""Where the demo model is found and converted: the package's data, a per-user cache."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import pyg_edge_convert
from pyg_edge import demo
from pyg_edge.cli import main
from pyg_edge.errors import ModelLoadError
from support.paths import home_env


@pytest.fixture
def no_cache_env(monkeypatch, tmp_path):
    for name in ("PYG_EDGE_CACHE", "XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in home_env(tmp_path / "home").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", "linux")


def test_the_demo_ships_inside_the_package():
    package = Path(demo.__file__).resolve().parent
    assert demo.DEMO_CHECKPOINT.is_relative_to(package)
    assert demo.DEMO_CHARACTER.is_file() and demo.DEMO_CHARACTER.is_relative_to(package)


def test_an_app_gets_the_demo_model_and_character_from_the_public_api(monkeypatch, tmp_path):
    import pyg_edge

    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path))
    assert {"demo_model", "demo_character"} <= set(pyg_edge.__all__)
    folder = pyg_edge.demo_model()
    assert folder.parent == tmp_path and (folder / "pyg_edge.json").is_file()
    assert pyg_edge.demo_model() == folder  # converted once, then found
    robin = pyg_edge.demo_character()
    assert isinstance(robin, pyg_edge.Character) and robin.name == "Robin" and robin.greeting


def test_the_cache_is_the_env_var_then_xdg_then_home(no_cache_env, monkeypatch, tmp_path):
    assert demo.cache_dir() == tmp_path / "home" / ".cache" / "pyg-edge"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert demo.cache_dir() == tmp_path / "xdg" / "pyg-edge"
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path / "mine"))
    assert demo.cache_dir() == tmp_path / "mine"


def test_the_cache_on_windows_is_local_app_data(no_cache_env, monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "local"))
    assert demo.cache_dir() == tmp_path / "local" / "pyg-edge"


def test_a_new_converter_version_converts_again(monkeypatch, tmp_path):
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path))
    before = demo.converted_path()
    monkeypatch.setattr(pyg_edge_convert, "__version__", "999.0")
    assert demo.converted_path() != before and demo.converted_path().parent == tmp_path


def test_other_conversion_settings_convert_again(monkeypatch, tmp_path):
    """A cache made with other settings (a one-pass prompt, before the chunk was the
    default) is never reused."""
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path))
    before = demo.converted_path()
    assert demo.conversion_settings() == {"quantization": "int8", "prefill_chunk": 256}
    monkeypatch.setattr(demo, "conversion_settings",
                        lambda: {"quantization": "int8", "prefill_chunk": 0})
    assert demo.converted_path() != before


def test_converts_once_into_the_cache_then_reuses_it(monkeypatch, tmp_path):
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path))
    folder = demo.demo_model()
    assert folder.parent == tmp_path and (folder / "pyg_edge.json").is_file()
    metadata = json.loads((folder / "pyg_edge.json").read_text())
    assert (metadata["quantization"], metadata["prefill_chunk"]) == ("int8", 256)
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert demo.demo_model() == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging left behind


def test_losing_a_conversion_race_uses_the_winners_model(monkeypatch, tmp_path):
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path))

    def other_process_wins(src, dest, *args, **kwargs):
        Path(dest).mkdir(parents=True)
        (Path(dest) / "pyg_edge.json").write_text("{}")
        raise pyg_edge_convert.ConversionError(f"{dest} already exists")

    monkeypatch.setattr(pyg_edge_convert, "convert_checkpoint", other_process_wins)
    assert demo.demo_model() == demo.converted_path()


def test_two_processes_converting_at_once_both_get_the_model(tmp_path):
    code = "from pyg_edge import demo; print(demo.demo_model())"
    env = {**os.environ, "PYG_EDGE_CACHE": str(tmp_path)}
    runs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert outputs[0][0] == outputs[1][0]
    assert [p.name for p in tmp_path.iterdir()] == [Path(outputs[0][0].strip()).name]


def test_an_unwritable_cache_names_the_variable_to_set(monkeypatch, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("PYG_EDGE_CACHE", str(blocker))
    with pytest.raises(ModelLoadError, match="PYG_EDGE_CACHE"):
        demo.demo_model()


def test_serve_without_a_model_serves_the_demo(monkeypatch, tmp_path):
    import pyg_edge.server

    served = []
    monkeypatch.setenv("PYG_EDGE_CACHE", str(tmp_path))
    monkeypatch.setattr(pyg_edge.server, "serve", lambda model, *args, **kw: served.append(model))
    result = CliRunner().invoke(main, ["serve", "--port", "5999"])
    assert result.exit_code == 0, result.output
    assert served == [demo.converted_path()]
    assert (served[0] / "pyg_edge.json").is_file()
