"""`pyg-edge bench` on the bundled demo model, at small settings: the machine, first-token
time and decode speed per prompt length, peak memory, as Markdown; a progress line."""

import platform

import pytest
from click.testing import CliRunner

from pyg_edge import demo
from pyg_edge.bench import BenchOptions, prompt_lengths, run_bench
from pyg_edge.cli import main
from pyg_edge.errors import OptionsError

SMALL = BenchOptions(prompt_tokens=(16, 48, 600), new_tokens=4, repeats=2)


@pytest.fixture(scope="module")
def demo_folder():
    return demo.demo_model()


def test_bench_measures_each_prompt_length_that_fits(demo_folder):
    steps = []
    report = run_bench(demo_folder, SMALL, lambda done, total, what: steps.append((done, what)))
    assert [row.prompt_tokens for row in report.rows] == [16, 48]
    assert report.skipped == (600,)  # over the demo's 512-token context
    for row in report.rows:
        assert 0 < row.first_token_seconds < 60
        assert row.decode_tokens_per_second > 0
        if platform.system() != "Windows":
            assert row.peak_rss_bytes > 10_000_000  # CTranslate2 and the model are in it
    assert steps[0] == (0, "loading the model") and steps[-1] == (5, "done")
    assert (3, "prompt 48 tokens, run 1/2") in steps
    labels = [label for label, _ in report.machine]
    assert {"cpu", "gemm backend", "int8 path check", "memory", "pyg-edge"} <= set(labels)


def test_the_report_is_markdown_to_paste(demo_folder):
    text = run_bench(demo_folder, BenchOptions((16,), 3, 1)).markdown()
    lines = text.splitlines()
    assert lines[0] == "### pyg-edge bench"
    header = lines.index("| prompt tokens | first token (s) | decode (tokens/s) | peak RSS (MB) |")
    assert lines[header + 1] == "|---:|---:|---:|---:|"
    assert lines[header + 2].startswith("| 16 | ")
    assert any(line.startswith("| model | pyg-demo-neo") and "context 512" in line
               for line in lines)
    assert all(line.count("|") >= 3 for line in lines if line.startswith("|"))


def test_default_lengths_follow_the_context():
    assert prompt_lengths(BenchOptions(), 2048) == ((128, 512, 1536), ())
    assert prompt_lengths(BenchOptions(new_tokens=200), 512) == ((32, 128), (384,))


def test_bad_settings_are_refused_before_anything_loads():
    with pytest.raises(OptionsError, match="at least 1"):
        run_bench("/nonexistent", BenchOptions(new_tokens=0))
    with pytest.raises(OptionsError, match="prompt lengths"):
        run_bench("/nonexistent", BenchOptions(prompt_tokens=(0,)))


def test_the_command_prints_markdown_and_a_progress_line():
    result = CliRunner().invoke(main, ["bench", "--prompt-tokens", "16", "--new-tokens", "3",
                                       "--repeats", "1"])
    assert result.exit_code == 0, result.output
    assert "| prompt tokens | first token (s)" in result.stdout
    assert "| 16 | " in result.stdout
    assert "[1/2] prompt 16 tokens, run 1/1" in result.stderr
    assert "[" not in result.stdout.split("### pyg-edge bench")[0]


def test_the_command_refuses_a_bad_setting_in_one_line():
    result = CliRunner().invoke(main, ["bench", "--repeats", "0"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    missing = CliRunner().invoke(main, ["bench", "/nonexistent/model"])
    assert missing.exit_code == 1 and "Error:" in missing.output
