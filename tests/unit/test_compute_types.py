"""Which compute type a model runs in, given what the CPU path check proved."""

import pytest

from pyg_edge.cpu import backend_choice, gemm_backend
from pyg_edge.cpu.backend_choice import GemmChoice
from pyg_edge.errors import ModelLoadError
from pyg_edge.generation import compute_types
from pyg_edge.generation.compute_types import fallback_type, resolve_compute_type

GB = 10**9
SATURATING = GemmChoice("onednn", "test", exact_types=("float32", "int16"),
                        failures=("onednn failed the int8 path check (saturate)",))


@pytest.fixture
def choice(monkeypatch):
    def set_choice(value):
        monkeypatch.setattr(backend_choice, "_choice", value)
    return set_choice


@pytest.mark.parametrize("types, size, available, expected", [
    (("float32", "int16"), 2.7 * GB, 20 * GB, "float32"),  # 12.2 GB for float32 fits
    (("float32", "int16"), 2.7 * GB, 10 * GB, "int16"),  # 6.8 GB for int16 fits
    (("float32", "int16"), 2.7 * GB, 4 * GB, None),
    (("float32",), 2.7 * GB, 10 * GB, None),
    (("float32", "int16"), 2.7 * GB, None, "int16"),  # unknown memory: the smaller one
    ((), 2.7 * GB, 20 * GB, None),
])
def test_the_fallback_is_the_first_exact_type_that_fits(types, size, available, expected):
    assert fallback_type(types, size, available) == expected


def test_an_exact_int8_path_keeps_int8(choice):
    choice(GemmChoice("exact-vnni", "test", exact_types=("int8",)))
    assert resolve_compute_type("auto", "int8", "cpu", "model") == "int8"
    assert resolve_compute_type("int8", "int8", "cpu", "model") == "int8"


def test_an_inexact_int8_path_runs_auto_in_a_fallback(choice, monkeypatch, caplog):
    choice(SATURATING)
    monkeypatch.setattr(compute_types, "model_bytes", lambda path: 2.7 * GB)
    monkeypatch.setattr(compute_types, "available_memory", lambda: 8 * GB)
    assert resolve_compute_type("auto", "int8", "cpu", "model") == "int16"
    assert "instead of int8" in caplog.text


def test_int8_asked_for_on_an_inexact_path_is_refused_with_the_way_out(choice):
    choice(SATURATING)
    with pytest.raises(ModelLoadError, match="allow_inexact=True"):
        resolve_compute_type("int8", "int8", "cpu", "model")


def test_allow_inexact_runs_int8_and_says_what_it_costs(choice, caplog):
    choice(SATURATING)
    assert resolve_compute_type("auto", "int8", "cpu", "model", allow_inexact=True) == "int8"
    assert "2.63 off" in caplog.text


def test_no_fallback_that_fits_is_an_error_not_a_wrong_number(choice, monkeypatch):
    choice(SATURATING)
    monkeypatch.setattr(compute_types, "model_bytes", lambda path: 2.7 * GB)
    monkeypatch.setattr(compute_types, "available_memory", lambda: 2 * GB)
    with pytest.raises(ModelLoadError, match="no exact compute type fits"):
        resolve_compute_type("auto", "int8", "cpu", "model")


@pytest.mark.parametrize("requested, quantization, device", [
    ("auto", "float32", "cpu"), ("float32", "int8", "cpu"), ("auto", "int8", "cuda")])
def test_other_types_and_devices_are_not_the_cpu_checks_business(choice, requested,
                                                                 quantization, device):
    choice(SATURATING)
    expected = compute_types.auto_compute_type(quantization, device)
    assert resolve_compute_type(requested, quantization, device, "model") == (
        expected if requested == "auto" else requested)


def test_a_users_ct2_use_mkl_is_never_overridden_by_a_fallback(monkeypatch):
    cpu = gemm_backend.CpuInfo("AuthenticAMD", "test", frozenset(("avx2", "fma")))
    monkeypatch.setenv("CT2_USE_MKL", "0")
    assert backend_choice.candidates("ctranslate2 default", "auto", cpu) == [
        "ctranslate2 default"]
    monkeypatch.delenv("CT2_USE_MKL")
    tried = backend_choice.candidates("ctranslate2 default", "auto", cpu)
    assert tried[0] == "ctranslate2 default"
    assert ("onednn" in tried) == gemm_backend.is_x86()  # then the next one, on x86
