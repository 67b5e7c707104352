"""Reading checkpoints: safetensors and torch zips, dtypes, and the pickle that runs no code."""

import os
import pickle
import zipfile

import numpy as np
import pytest

from pyg_edge_convert import ConversionError
from pyg_edge_convert.safetensors_file import read_safetensors, write_safetensors
from pyg_edge_convert.tensors import float32_to_bfloat16_bits, quantize_int8_rows
from pyg_edge_convert.torch_zip_file import read_torch_zip
from support.paths import CHECKPOINTS


def test_safetensors_round_trip_with_every_float_dtype(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.standard_normal((3, 5)).astype(np.float32)
    bf16 = float32_to_bfloat16_bits(values)
    write_safetensors(tmp_path / "t.safetensors",
                      {"f32": values, "f16": values.astype(np.float16), "bf16": bf16},
                      dtypes={"bf16": "BF16"})
    tensors = read_safetensors(str(tmp_path / "t.safetensors"))
    assert tensors["f32"].float32().tolist() == values.tolist()
    assert np.array_equal(tensors["f16"].float32(), values.astype(np.float16).astype(np.float32))
    assert tensors["bf16"].dtype == "BF16"
    assert np.abs(tensors["bf16"].float32() - values).max() <= np.abs(values).max() / 256


def test_bfloat16_rounds_to_nearest_even_and_keeps_nan():
    values = np.array([1.0, 1 + 2**-8, 1 + 3 * 2**-8, -2.5, np.nan, np.inf], np.float32)
    widened = (float32_to_bfloat16_bits(values).astype(np.uint32) << 16).view(np.float32)
    assert widened[:4].tolist() == [1.0, 1.0, 1 + 4 * 2**-8, -2.5]
    assert np.isnan(widened[4]) and widened[5] == np.inf


def test_int8_rows_scale_to_127_and_zero_rows_stay_zero():
    weight = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]], np.float32)
    quantized, scale = quantize_int8_rows(weight)
    assert quantized.tolist() == [[64, -127, 32], [0, 0, 0]]
    assert scale.tolist() == [127.0, 1.0]


def test_torch_zip_fp16_checkpoint_is_read_with_its_shapes():
    tensors = read_torch_zip(str(CHECKPOINTS / "neo_w32_bin_f16" / "pytorch_model.bin"))
    wte = tensors["transformer.wte.weight"]
    assert (wte.shape, wte.dtype) == ((512, 48), "F16")
    assert wte.float32().dtype == np.float32 and np.isfinite(wte.float32()).all()
    assert tensors["transformer.h.0.attn.attention.bias"].dtype == "BOOL"


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def torch_zip_with_pickle(path, payload: bytes):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")


@pytest.mark.parametrize("protocol", [0, 2, 4])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"transformer.wte.weight": _RunsCode(marker)}, protocol=protocol)
    torch_zip_with_pickle(tmp_path / "pytorch_model.bin", payload)
    with pytest.raises(ConversionError, match="posix.system|os.system|nt.system"):
        read_torch_zip(str(tmp_path / "pytorch_model.bin"))
    assert not marker.exists()


def test_a_pickle_calling_eval_through_builtins_is_refused(tmp_path):
    payload = b"cbuiltins\neval\n(V__import__('os').system('false')\ntR."
    torch_zip_with_pickle(tmp_path / "pytorch_model.bin", payload)
    with pytest.raises(ConversionError, match="builtins.eval"):
        read_torch_zip(str(tmp_path / "pytorch_model.bin"))


def test_a_truncated_torch_zip_is_named(tmp_path):
    data = (CHECKPOINTS / "neo_w32_bin_f16" / "pytorch_model.bin").read_bytes()
    (tmp_path / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ConversionError, match="truncated"):
        read_torch_zip(str(tmp_path / "pytorch_model.bin"))


def test_a_truncated_safetensors_is_named(tmp_path):
    data = (CHECKPOINTS / "neo_w16_safetensors_f32" / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(ConversionError, match="truncated"):
        read_safetensors(str(tmp_path / "model.safetensors"))


def test_garbage_is_not_taken_for_safetensors(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ConversionError, match="truncated or not a safetensors file"):
        read_safetensors(str(tmp_path / "model.safetensors"))


def test_pickle_stream_is_never_handed_to_plain_pickle(monkeypatch, tmp_path):
    """The reader must not fall back on pickle.load/loads for checkpoint data."""
    def forbidden(*args, **kwargs):
        raise AssertionError("plain unpickling of a checkpoint")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    tensors = read_torch_zip(str(CHECKPOINTS / "neo_w32_bin_f16" / "pytorch_model.bin"))
    assert "transformer.wpe.weight" in tensors


@pytest.mark.parametrize("payload", [
    b"\x80\x02}q\x00",  # a dict, cut before its STOP
    b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01(X\x01\x00\x00\x00a",  # cut mid-key
    b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n(K\x01K\x02K\x03tR.",  # wrong arguments
    b"\x80\x02K\x01.",  # a pickle of 1, not a state dict
    b"not a pickle at all",
])
def test_a_broken_pickle_is_one_clear_error(tmp_path, payload):
    torch_zip_with_pickle(tmp_path / "pytorch_model.bin", payload)
    with pytest.raises(ConversionError, match="pickle|state dict"):
        read_torch_zip(str(tmp_path / "pytorch_model.bin"))
