"""GPT-Neo's config and weights, mapped onto CTranslate2's Transformer decoder.

CTranslate2 has no local attention that is exact for a prompt processed in one pass, so
each local layer gets one extra dimension per head that carries a mask (docs/converter.md,
"Exact local attention"): q has a constant 1.0 there, k and v have 0, and the Shaw
relative-position keys hold a large negative number in that dimension for "window or more
tokens back". q·k is
unchanged for nearer keys, farther keys vanish in the softmax, and the output
projection ignores the extra value dimension.

There are no relative-position *values*: they would be all zeros, and CTranslate2
gathers a [queries, keys, head_dim] tensor for each table it is given, which made the
exact prefill about 1.5x slower (65 s against 44 s at 1,500 prompt tokens, 2.7B shape).

CTranslate2 drops the learned position table when its first layer has relative
positions. A checkpoint whose first layer is local therefore gets an extra first layer
that adds exact zeros (zero output projections), so the table stays in use.
"""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from pyg_edge_convert.errors import ConversionError
from pyg_edge_convert.tensors import FLOAT_DTYPES

SUPPORTED = "gpt_neo (GPTNeoForCausalLM: gpt-neo-125M/1.3B/2.7B, Pygmalion 1.3B and 2.7B)"
# Large enough to zero a softmax weight, small enough for float16 compute on GPUs.
LOCAL_MASK_VALUE = -1e4
_ACTIVATIONS = {"gelu_new": 1, "gelu": 3}  # CTranslate2's GELUTanh and GELU


@dataclass(frozen=True)
class GptNeoConfig:
    """The parts of a gpt-neo config.json the conversion depends on."""

    hidden_size: int
    num_heads: int
    vocab_size: int
    max_positions: int
    window_size: int
    intermediate_size: int
    layer_norm_epsilon: float
    attention_layers: tuple
    activation: str
    tie_word_embeddings: bool
    bos_token_id: int
    eos_token_id: int

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


def parse_config(config: dict) -> GptNeoConfig:
    """Reads a Hugging Face gpt-neo config.json.

    Raises:
      ConversionError: another architecture, or a missing or inconsistent field.
    """
    model_type = config.get("model_type")
    if model_type != "gpt_neo":
        raise ConversionError(
            f"config.json describes model_type {model_type!r}; pyg-edge converts only {SUPPORTED}"
        )
    try:
        hidden = _positive_int(config, "hidden_size")
        heads = _positive_int(config, "num_heads")
        activation = config.get("activation_function", "gelu_new")
        parsed = GptNeoConfig(
            hidden_size=hidden,
            num_heads=heads,
            vocab_size=_positive_int(config, "vocab_size"),
            max_positions=_positive_int(config, "max_position_embeddings"),
            window_size=_positive_int(config, "window_size"),
            intermediate_size=int(config.get("intermediate_size") or 4 * hidden),
            layer_norm_epsilon=float(config.get("layer_norm_epsilon", 1e-5)),
            attention_layers=_attention_layers(config),
            activation=activation,
            tie_word_embeddings=bool(config.get("tie_word_embeddings", True)),
            bos_token_id=int(config.get("bos_token_id", 50256)),
            eos_token_id=int(config.get("eos_token_id", 50256)),
        )
    except (TypeError, ValueError) as error:
        raise ConversionError(f"config.json is malformed: {error}") from None
    if hidden % heads:
        raise ConversionError(
            f"config.json: hidden_size {hidden} is not a multiple of num_heads {heads}"
        )
    for key in ("bos_token_id", "eos_token_id"):
        if not 0 <= getattr(parsed, key) < parsed.vocab_size:
            raise ConversionError(f"config.json: {key} is outside the vocabulary")
    if activation not in _ACTIVATIONS:
        raise ConversionError(
            f"config.json: activation_function {activation!r}; expected one of: "
            + ", ".join(_ACTIVATIONS)
        )
    return parsed


def _positive_int(config: dict, key: str) -> int:
    if key not in config:
        raise ConversionError(f"config.json has no {key}")
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConversionError(f"config.json: {key} is {value!r}, expected a positive integer")
    return value


def _attention_layers(config: dict) -> tuple:
    """Expands attention_types ([[["global", "local"], 16]]) to one type per layer."""
    num_layers = _positive_int(config, "num_layers")
    layers = []
    for entry in config.get("attention_types") or [[["global"], num_layers]]:
        try:
            types, repeat = entry
            layers.extend(list(types) * int(repeat))
        except (TypeError, ValueError):
            raise ConversionError(
                f"config.json: malformed attention_types entry {entry!r}"
            ) from None
    if len(layers) != num_layers or set(layers) - {"global", "local"}:
        raise ConversionError(
            f"config.json: attention_types gives {len(layers)} layers of types "
            f"{sorted(set(layers))}, expected {num_layers} of global/local"
        )
    return tuple(layers)


# A converted variable: CTranslate2 name, float32 value, whether it is a quantizable weight.
Variable = tuple
Getter = Callable[[str, tuple], np.ndarray]


def decoder_scalars(config: GptNeoConfig, exact: bool = True,
                    prefill_chunk: int = 0) -> Iterator[tuple]:
    """The decoder's fixed settings, as (name, numpy scalar); see check_prefill_chunk."""
    yield "decoder/num_heads", np.int16(config.num_heads)
    if prefill_chunk:
        yield "decoder/sliding_window", np.int32(prefill_chunk)
    yield "decoder/pre_norm", np.int8(1)
    yield "decoder/activation", np.int8(_ACTIVATIONS[config.activation])
    yield "decoder/alignment_heads", np.int16(1)
    yield "decoder/alignment_layer", np.int16(-1)
    for flag in ("alibi", "alibi_use_positive_positions", "scale_alibi",
                 "scale_embeddings", "start_from_zero_embedding"):
        yield f"decoder/{flag}", np.int8(0)
    for i, kind in enumerate(ct2_layers(config, exact)):
        scope = f"decoder/layer_{i}/self_attention"
        yield f"{scope}/queries_scale", np.float32(1.0)
        head_dim = {"local": config.head_dim + 1, "zero": 1}.get(kind)
        if head_dim:
            yield f"{scope}/head_dim", np.int32(head_dim)
        if kind == "sliding":
            yield f"{scope}/sliding_window", np.int32(config.window_size)


def default_prefill_chunk(max_positions: int) -> int:
    """The converter's default prefill chunk: half the context.

    A first pass of up to 2 * chunk tokens is exact (check_prefill_chunk), so half the
    context is the smallest chunk that reads any prompt that fits in one first pass (two
    chunks) when nothing is cached; a smaller one would have the runtime cut long prompts.
    """
    return max_positions // 2


def check_prefill_chunk(chunk: int | None, exact: bool = True, max_positions: int = 0) -> int:
    """Checks a prompt chunk size for CTranslate2's decoder-level sliding window.

    With decoder/sliding_window = chunk, CTranslate2 reads a prompt pass longer than chunk
    in chunks of that size; chunk i > 0 sees `chunk + c + 1` keys for its query c, which
    is every earlier token while at most two chunks are read with nothing cached before
    them. Local layers keep their exact relative-position mask, so the pass stays exact
    for a first pass of up to 2 * chunk tokens and a pass after a cached prefix of up to
    chunk tokens; the runtime keeps every pass within that (pyg_edge.generation.prefill). The second
    chunk skips the first chunk's queries against itself: less attention work and a
    smaller [queries, keys, head_dim + 1] tensor per local layer.

    Args:
      chunk: Tokens per chunk, 0 for none, or None for the default: half of max_positions
        (default_prefill_chunk) with exact local attention, none without.
      exact: Whether local attention is exact (the chunk needs it).
      max_positions: The model's context, for the default.

    Returns:
      chunk, or 0 for none.

    Raises:
      ConversionError: chunk is negative, or given without exact local attention.
    """
    if chunk is None:
        return default_prefill_chunk(max_positions) if exact else 0
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
        raise ConversionError(f"prefill chunk is {chunk!r}, expected an integer >= 0")
    if chunk and not exact:
        raise ConversionError("a prefill chunk needs exact local attention")
    return chunk


def ct2_layers(config: GptNeoConfig, exact: bool = True) -> tuple:
    """The CTranslate2 layers: the checkpoint's, after a "zero" layer if the first is local.

    Without exact, local layers become "sliding": CTranslate2's own sliding window, which
    only trims the cache while generating, so a prompt read in one pass sees too far back.
    That mode exists to measure what exactness is worth (benchmarks/quality_report.py).
    """
    if not exact:
        return tuple("sliding" if kind == "local" else kind for kind in config.attention_layers)
    if config.attention_layers[0] == "local":
        return ("zero",) + config.attention_layers
    return config.attention_layers


def conversion_steps(config: GptNeoConfig, get: Getter, exact: bool = True) -> list:
    """The conversion as a list of steps, each returning the Variables it produces.

    Steps read their tensors only when called, so at most one layer's part is in memory.
    """
    h = config.hidden_size
    steps = [
        lambda: [("decoder/embeddings/weight", get("wte.weight", (config.vocab_size, h)), True)],
        lambda: [("decoder/position_encodings/encodings",
                  get("wpe.weight", (config.max_positions, h)), False)],
        lambda: _layer_norm("decoder/layer_norm", "ln_f", h, get),
    ]
    if not config.tie_word_embeddings:
        steps.append(lambda: [("decoder/projection/weight",
                               get("lm_head.weight", (config.vocab_size, h)), True)])
    layers = ct2_layers(config, exact)
    shift = len(layers) - len(config.attention_layers)
    if shift:
        steps.append(lambda: _zero_layer(config))
    for i, kind in enumerate(layers[shift:]):
        steps.append(lambda i=i, kind=kind: _attention(config, get, i, i + shift, kind == "local"))
        steps.append(lambda i=i: _feed_forward(config, get, i, i + shift))
    return steps


def _zero_layer(config: GptNeoConfig) -> list:
    """A global layer of minimal size whose attention and feed-forward both add zeros."""
    h, heads = config.hidden_size, config.num_heads
    ones, zeros = np.ones(h, np.float32), np.zeros(h, np.float32)
    qkv = np.zeros((3 * heads, h), np.float32)  # head_dim 1: the smallest attention
    return [
        ("decoder/layer_0/self_attention/layer_norm/gamma", ones, False),
        ("decoder/layer_0/self_attention/layer_norm/beta", zeros, False),
        ("decoder/layer_0/self_attention/linear_0/weight", qkv, True),
        ("decoder/layer_0/self_attention/linear_1/weight", np.zeros((h, heads), np.float32), True),
        ("decoder/layer_0/self_attention/linear_1/bias", zeros, False),
        ("decoder/layer_0/ffn/layer_norm/gamma", ones, False),
        ("decoder/layer_0/ffn/layer_norm/beta", zeros, False),
        ("decoder/layer_0/ffn/linear_0/weight", np.zeros((1, h), np.float32), True),
        ("decoder/layer_0/ffn/linear_0/bias", np.zeros(1, np.float32), False),
        ("decoder/layer_0/ffn/linear_1/weight", np.zeros((h, 1), np.float32), True),
        ("decoder/layer_0/ffn/linear_1/bias", zeros, False),
    ]


def _layer_norm(scope: str, hf_name: str, size: int, get: Getter) -> list:
    return [
        (f"{scope}/gamma", get(f"{hf_name}.weight", (size,)), False),
        (f"{scope}/beta", get(f"{hf_name}.bias", (size,)), False),
    ]


def _attention(config: GptNeoConfig, get: Getter, i: int, ct2_i: int, local: bool) -> list:
    h, heads, head_dim = config.hidden_size, config.num_heads, config.head_dim
    hf = f"h.{i}.attn.attention"
    scope = f"decoder/layer_{ct2_i}/self_attention"
    qkv = [get(f"{hf}.{p}_proj.weight", (h, h)) for p in ("q", "k", "v")]
    out_weight = get(f"{hf}.out_proj.weight", (h, h))
    variables = _layer_norm(f"{scope}/layer_norm", f"h.{i}.ln_1", h, get)
    variables.append((f"{scope}/linear_1/bias", get(f"{hf}.out_proj.bias", (h,)), False))
    if not local:
        variables.append((f"{scope}/linear_0/weight", np.concatenate(qkv), True))
        variables.append((f"{scope}/linear_1/weight", out_weight, True))
        return variables
    # Per head: the original dimensions, then one extra dimension that carries the mask.
    padded = [np.pad(w.reshape(heads, head_dim, h), ((0, 0), (0, 1), (0, 0))) for w in qkv]
    bias = np.zeros((3, heads, head_dim + 1), np.float32)
    bias[0, :, head_dim] = 1.0
    out_padded = np.pad(out_weight.reshape(h, heads, head_dim), ((0, 0), (0, 0), (0, 1)))
    window = config.window_size
    relative_keys = np.zeros((2 * window + 1, head_dim + 1), np.float32)
    relative_keys[0, head_dim] = LOCAL_MASK_VALUE  # every key `window` or more tokens back
    return variables + [
        (f"{scope}/linear_0/weight", np.concatenate(padded).reshape(-1, h), True),
        (f"{scope}/linear_0/bias", bias.reshape(-1), False),
        (f"{scope}/linear_1/weight", out_padded.reshape(h, -1), True),
        (f"{scope}/relative_position_keys", relative_keys, False),
    ]


def _feed_forward(config: GptNeoConfig, get: Getter, i: int, ct2_i: int) -> list:
    h, inner = config.hidden_size, config.intermediate_size
    scope = f"decoder/layer_{ct2_i}/ffn"
    return _layer_norm(f"{scope}/layer_norm", f"h.{i}.ln_2", h, get) + [
        (f"{scope}/linear_0/weight", get(f"h.{i}.mlp.c_fc.weight", (inner, h)), True),
        (f"{scope}/linear_0/bias", get(f"h.{i}.mlp.c_fc.bias", (inner,)), False),
        (f"{scope}/linear_1/weight", get(f"h.{i}.mlp.c_proj.weight", (h, inner)), True),
        (f"{scope}/linear_1/bias", get(f"h.{i}.mlp.c_proj.bias", (h,)), False),
    ]


def tensor_getter(tensors: dict) -> Getter:
    """Returns get(name, shape): a checked float32 tensor by its name below `transformer.`.

    Raises (from get):
      ConversionError: the tensor is missing, of the wrong shape, or not floating point.
    """
    prefix = "transformer." if any(k.startswith("transformer.") for k in tensors) else ""

    def get(name: str, shape: tuple) -> np.ndarray:
        key = name if name == "lm_head.weight" else prefix + name
        ref = tensors.get(key)
        if ref is None:
            raise ConversionError(f"the checkpoint has no tensor {key}")
        if ref.shape != shape:
            raise ConversionError(
                f"tensor {key} has shape {list(ref.shape)}, config.json implies {list(shape)}"
            )
        if ref.dtype not in FLOAT_DTYPES:
            raise ConversionError(
                f"tensor {key} has dtype {ref.dtype}, expected one of: " + ", ".join(FLOAT_DTYPES)
            )
        return ref.float32()

    return get
