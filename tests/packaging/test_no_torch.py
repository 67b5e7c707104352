"""The conversion path must not import torch or transformers, even where they are installed."""

import os
import subprocess
import sys
import textwrap

from support.paths import CHECKPOINTS


def test_conversion_runs_with_torch_and_transformers_poisoned(tmp_path):
    poison = tmp_path / "poison"
    for name in ("torch", "transformers", "safetensors"):
        (poison / name).mkdir(parents=True)
        (poison / name / "__init__.py").write_text(f"raise ImportError('{name} was imported')\n")
    script = textwrap.dedent(f"""
        import sys
        from pyg_edge.cli import main
        for name in ("neo_w32_bin_f16", "neo_w8_safetensors_sharded_bf16"):
            main(["convert", "{CHECKPOINTS}/" + name, "{tmp_path}/" + name,
                  "-q", "int8_bfloat16"], standalone_mode=False)
        banned = [m for m in sys.modules if m.split(".")[0] in ("torch", "transformers")]
        print("imported:", banned)
    """)
    path = os.pathsep.join([str(poison), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": path}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "imported: []" in result.stdout
    assert (tmp_path / "neo_w32_bin_f16" / "model.bin").exists()
    assert (tmp_path / "neo_w8_safetensors_sharded_bf16" / "model.bin").exists()
