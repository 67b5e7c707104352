"""pyg-edge: run Pygmalion (gpt-neo) dialogue models with CTranslate2 on ordinary machines."""

__version__ = "0.1.0"
