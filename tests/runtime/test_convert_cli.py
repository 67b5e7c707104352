"""`pyg-edge convert` as a user meets it: the output folder, bad input, atomic writes."""

import io
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap

import ctranslate2
import numpy as np
import pytest
from click.testing import CliRunner

from pyg_edge.cli import main
from pyg_edge_convert import ConversionError, convert_checkpoint
from pyg_edge_convert.safetensors_file import read_safetensors, write_safetensors
from support.paths import CHECKPOINTS

SMALL = "neo_w16_safetensors_f32"


def run(*args):
    return CliRunner().invoke(main, ["convert", *map(str, args)])


def copy_checkpoint(tmp_path, name=SMALL):
    return shutil.copytree(CHECKPOINTS / name, tmp_path / "src")


def assert_one_line_error(result, *fragments):
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def assert_nothing_left(parent, before=()):
    assert sorted(os.listdir(parent)) == sorted(before)


def test_convert_writes_a_folder_ctranslate2_loads_alone(tmp_path):
    result = run(CHECKPOINTS / SMALL, tmp_path / "model")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Wrote {tmp_path / 'model'}: int8, ")
    assert result.output.rstrip().endswith(" s")
    folder = tmp_path / "model"
    assert sorted(os.listdir(folder)) == [
        "config.json", "model.bin", "pyg_edge.json", "tokenizer.json", "vocabulary.json"]
    generator = ctranslate2.Generator(str(folder), compute_type="int8")
    assert np.array(generator.forward_batch([[1, 2, 3]])).shape == (1, 3, 512)
    metadata = json.loads((folder / "pyg_edge.json").read_text())
    assert metadata["quantization"] == "int8"
    assert (metadata["context_length"], metadata["window_size"]) == (256, 16)
    assert (metadata["bos_token_id"], metadata["eos_token_id"]) == (511, 511)
    assert metadata["source"]["config"]["model_type"] == "gpt_neo"
    assert metadata["source"]["files"] == ["model.safetensors"]
    assert metadata["converter_version"]


def test_an_existing_dest_is_refused_without_force_and_replaced_with_it(tmp_path):
    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    assert_one_line_error(run(CHECKPOINTS / SMALL, dest), "already exists", "--force")
    assert os.listdir(dest) == ["keep.txt"]
    assert run(CHECKPOINTS / SMALL, dest, "--force").exit_code == 0
    assert "model.bin" in os.listdir(dest) and "keep.txt" not in os.listdir(dest)
    assert_nothing_left(tmp_path, ["model"])


def test_a_failure_midway_leaves_no_folder_and_keeps_the_old_one(tmp_path, monkeypatch):
    from pyg_edge_convert import convert as convert_module

    dest = tmp_path / "model"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_module, "_write_ct2_config", interrupted)
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(str(CHECKPOINTS / SMALL), str(dest), force=True)
    assert os.listdir(dest) == ["keep.txt"]
    with pytest.raises(KeyboardInterrupt):
        convert_checkpoint(str(CHECKPOINTS / SMALL), str(tmp_path / "new"))
    assert_nothing_left(tmp_path, ["model"])


def test_a_hub_id_says_there_is_no_network_and_how_to_pass_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("PygmalionAI/pygmalion-2.7b", "model")
    assert_one_line_error(result, "hub id", "no network", "local folder")
    assert_nothing_left(tmp_path)


def test_a_malicious_pickle_is_refused_and_its_code_never_runs(tmp_path):
    import zipfile

    src = copy_checkpoint(tmp_path, "neo_w32_bin_f16")
    marker = tmp_path / "pwned"
    # Written by hand, so that nothing in this test unpickles it.
    payload = b"cposix\nsystem\n(V" + f"touch {marker}".encode() + b"\ntR."
    with zipfile.ZipFile(src / "pytorch_model.bin", "w") as archive:
        archive.writestr("archive/data.pkl", payload)
    assert_one_line_error(run(src, tmp_path / "out"), "posix.system", "unsafe")
    assert not marker.exists()
    assert_nothing_left(tmp_path, ["src"])


@pytest.mark.parametrize("name, filename", [
    ("neo_w16_safetensors_f32", "model.safetensors"),
    ("neo_w32_bin_f16", "pytorch_model.bin"),
    ("neo_w8_safetensors_sharded_bf16", "model-00002-of-00002.safetensors"),
])
def test_a_truncated_checkpoint_is_named(tmp_path, name, filename):
    src = copy_checkpoint(tmp_path, name)
    data = (src / filename).read_bytes()
    (src / filename).write_bytes(data[: len(data) * 2 // 3])
    assert_one_line_error(run(src, tmp_path / "out"), filename, "truncated")
    assert_nothing_left(tmp_path, ["src"])


def edit_config(src, **changes):
    config = json.loads((src / "config.json").read_text())
    config.update(changes)
    (src / "config.json").write_text(json.dumps(config))


def test_another_architecture_is_refused_with_the_supported_ones(tmp_path):
    src = copy_checkpoint(tmp_path)
    edit_config(src, model_type="llama")
    assert_one_line_error(run(src, tmp_path / "out"), "'llama'", "only gpt_neo", "Pygmalion")


@pytest.mark.parametrize("content, message", [
    (None, "no config.json"),
    ("{not json", "config.json is not valid JSON"),
    ("[1, 2]", "config.json is not a JSON object"),
])
def test_a_missing_or_malformed_config_is_named(tmp_path, content, message):
    src = copy_checkpoint(tmp_path)
    if content is None:
        os.remove(src / "config.json")
    else:
        (src / "config.json").write_text(content)
    assert_one_line_error(run(src, tmp_path / "out"), message)


def test_a_config_without_a_needed_field_names_it(tmp_path):
    src = copy_checkpoint(tmp_path)
    config = json.loads((src / "config.json").read_text())
    del config["hidden_size"]
    (src / "config.json").write_text(json.dumps(config))
    assert_one_line_error(run(src, tmp_path / "out"), "hidden_size")


def rewrite_weights(src, edit):
    path = src / "model.safetensors"
    tensors = {k: ref.read() for k, ref in read_safetensors(str(path)).items()}
    edit(tensors)
    write_safetensors(path, tensors)


def test_a_missing_tensor_is_named(tmp_path):
    src = copy_checkpoint(tmp_path)
    rewrite_weights(src, lambda t: t.pop("transformer.h.1.mlp.c_fc.bias"))
    assert_one_line_error(run(src, tmp_path / "out"), "no tensor transformer.h.1.mlp.c_fc.bias")
    assert_nothing_left(tmp_path, ["src"])


def test_a_tensor_of_the_wrong_shape_is_named(tmp_path):
    src = copy_checkpoint(tmp_path)

    def widen(tensors):
        tensors["transformer.h.2.attn.attention.k_proj.weight"] = np.zeros((32, 33), np.float32)

    rewrite_weights(src, widen)
    assert_one_line_error(
        run(src, tmp_path / "out"), "transformer.h.2.attn.attention.k_proj.weight", "[32, 33]")


def test_an_unwritable_dest_is_named(tmp_path):
    (tmp_path / "a-file").write_text("")
    assert_one_line_error(run(CHECKPOINTS / SMALL, tmp_path / "a-file" / "model"), "cannot write")
    assert_nothing_left(tmp_path, ["a-file"])


def test_dest_may_not_be_the_checkpoint_itself(tmp_path):
    src = copy_checkpoint(tmp_path)
    assert_one_line_error(run(src, src, "--force"), "replace the checkpoint itself")
    assert "model.safetensors" in os.listdir(src)


def test_a_folder_without_weights_lists_what_it_looks_for(tmp_path):
    src = copy_checkpoint(tmp_path)
    os.remove(src / "model.safetensors")
    assert_one_line_error(run(src, tmp_path / "out"), "holds no weights", "pytorch_model.bin")


def test_a_folder_without_tokenizer_files_says_which_it_needs(tmp_path):
    src = copy_checkpoint(tmp_path)
    os.remove(src / "merges.txt")
    assert_one_line_error(run(src, tmp_path / "out"), "tokenizer.json", "merges.txt")


def test_conversion_error_is_the_only_exception_bad_input_raises(tmp_path):
    with pytest.raises(ConversionError):
        convert_checkpoint(str(tmp_path / "missing"), str(tmp_path / "out"))


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM on Windows is TerminateProcess, "
                    "which runs no handler: the next conversion removes what is left "
                    "(remove_stale_staging, tested below)")
def test_sigterm_mid_conversion_leaves_nothing_behind(tmp_path):
    """A killed conversion (SIGTERM, as from a service manager) still removes its staging folder."""
    script = textwrap.dedent(f"""
        import sys, time
        from pyg_edge_convert import convert as convert_module
        from pyg_edge.cli import main

        def slow(*args):
            print("writing", flush=True)
            time.sleep(60)

        convert_module._write_ct2_config = slow
        main(["convert", "{CHECKPOINTS / SMALL}", "{tmp_path / 'out'}"])
    """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    assert any(name.endswith(".partial") for name in os.listdir(tmp_path))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) != 0
    assert_nothing_left(tmp_path)


def test_progress_is_drawn_on_a_terminal_only(monkeypatch):
    from pyg_edge import cli

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    monkeypatch.setattr(cli.sys, "stderr", terminal)
    with cli._ProgressBar("Converting") as progress:
        for done in range(1, 5):
            progress(done, 4)
    assert "Converting" in terminal.getvalue() and "100%" in terminal.getvalue()


KILLED_MID_CONVERSION = f"""
import sys, time
from pyg_edge_convert import convert as convert_module

def slow(*args):
    print("writing", flush=True)
    time.sleep(60)

convert_module._write_ct2_config = slow
convert_module.convert_checkpoint("{CHECKPOINTS / SMALL}", sys.argv[1])
"""


def test_a_killed_conversions_staging_is_removed_by_the_next_one(tmp_path):
    """SIGKILL leaves the staging folder (nothing can run then); the next conversion to
    the same folder removes it, and leaves a running conversion's alone."""
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-c", KILLED_MID_CONVERSION, str(out)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "writing"
    process.kill()
    process.wait(timeout=30)
    (stale,) = [n for n in os.listdir(tmp_path) if n.endswith(".partial")]
    running = tmp_path / ".out.live.partial"  # a conversion that is still going on
    running.mkdir()
    (running / ".pyg-edge-convert.pid").write_text(str(os.getpid()))
    convert_checkpoint(str(CHECKPOINTS / SMALL), str(out))
    left = sorted(n for n in os.listdir(tmp_path) if n.startswith("."))
    assert stale not in left and left == [".out.live.partial"]
    assert not (out / ".pyg-edge-convert.pid").exists()


def test_the_model_folder_gets_the_users_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        convert_checkpoint(str(CHECKPOINTS / SMALL), str(tmp_path / "out"))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "out").st_mode) == 0o755
