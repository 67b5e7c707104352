"""Request bodies built the way real frontends build them, with their DEFAULT settings.

Each builder follows the named client's code (field by field, in its order, leaving out
what it leaves out) so the contract tests send what a new user's frontend sends. Read from:
- SillyTavern 1.12 (SillyTavern/SillyTavern): public/scripts/kai-settings.js
  (getKoboldGenerationData) and src/endpoints/backends/kobold.js (the fields its server
  forwards); public/scripts/textgen-settings.js (getTextGenGenerationData) and
  src/endpoints/backends/text-completions.js (VLLM_KEYS filter); public/scripts/openai.js
  (sendOpenAIRequest) and src/endpoints/backends/chat-completions.js (Custom source).
- KoboldAI Lite (klite.embd in LostRuins/koboldcpp): submit_generation and
  dispatch_submit_generation for a KoboldCpp >= 1.49 endpoint.
- Agnaistic (agnaistic/agnai): srv/adapter/kobold.ts with common/presets/kobold.ts.
"""

# SillyTavern's KoboldCpp-recommended sampler order and its default chat names.
ST_USER, ST_CHAR = "User", "Aqua"
ST_STOP = [f"\n{ST_USER}:"]  # names_as_stop_strings is on by default
VLLM_KEYS = {
    "model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs",
    "max_tokens", "n", "presence_penalty", "seed", "stop", "stream", "suffix", "temperature",
    "top_p", "user", "use_beam_search", "top_k", "min_p", "repetition_penalty",
    "length_penalty", "early_stopping", "stop_token_ids", "ignore_eos", "min_tokens",
    "skip_special_tokens", "spaces_between_special_tokens", "truncate_prompt_tokens",
    "include_stop_str_in_output", "response_format", "guided_json", "guided_regex",
    "guided_choice", "guided_grammar", "guided_decoding_backend", "guided_whitespace_pattern",
}


def _defined(body: dict) -> dict:
    """JSON.stringify leaves out undefined fields (None here)."""
    return {k: v for k, v in body.items() if v is not None}


def st_kobold_classic(prompt, max_context=2048, amount_gen=80, stream=False):
    """SillyTavern, API "KoboldAI Classic" on a KoboldCpp-like server, default kai_settings.

    Returns the body SillyTavern's server posts to /api/v1/generate (or, with stream, to
    /api/extra/generate/stream): gui_settings is false, so it forwards these fields.
    """
    body = {
        "prompt": prompt, "use_story": False, "use_memory": False, "use_authors_note": False,
        "use_world_info": False, "max_context_length": max_context, "max_length": amount_gen,
        "rep_pen": 1, "rep_pen_range": 0, "rep_pen_slope": 0.9, "temperature": 1, "tfs": 1,
        "top_a": 1, "top_k": 0, "top_p": 1, "min_p": 0, "typical": 1,
        "sampler_order": [0, 1, 2, 3, 4, 5, 6], "singleline": False,
        "use_default_badwordsids": False, "mirostat": 0, "mirostat_eta": 0.1,
        "mirostat_tau": 5.0, "grammar": "",
        "sampler_seed": None,  # seed -1 is sent as undefined on this route
        "stop_sequence": ST_STOP,
    }
    return _defined(body)


def st_textgen(api_type, prompt, max_context=2048, amount_gen=80, stream=False):
    """SillyTavern, API "Text Completion" of type ooba (Default), koboldcpp, vllm or llamacpp.

    Default textgenerationwebui_settings; returns what its server posts to /v1/completions
    (/completion for llamacpp): the whole body, or only VLLM_KEYS for vllm.
    """
    ooba, kcpp, llama = api_type == "ooba", api_type == "koboldcpp", api_type == "llamacpp"
    params = {
        "prompt": prompt, "model": None, "max_new_tokens": amount_gen, "max_tokens": amount_gen,
        "logprobs": None, "temperature": 0.7, "top_p": 0.5, "typical_p": 1, "typical": 1,
        "sampler_seed": -1, "min_p": 0, "repetition_penalty": 1.2, "frequency_penalty": 0,
        "presence_penalty": 0, "top_k": 40, "skew": 0, "min_length": 0 if ooba else None,
        "min_tokens": 0, "num_beams": 1 if ooba else None,
        "length_penalty": 1 if ooba else None, "early_stopping": False if ooba else None,
        "add_bos_token": True, "smoothing_factor": 0.0, "smoothing_curve": 1.0,
        "dry_allowed_length": 2, "dry_multiplier": 0.0, "dry_base": 1.75,
        "dry_sequence_breakers": '["\\n", ":", "\\"", "*"]', "dry_penalty_last_n": 0,
        "max_tokens_second": 0,
        "sampler_priority": ["temperature", "dynamic_temperature", "quadratic_sampling",
                             "top_k", "top_p", "typical_p", "epsilon_cutoff", "eta_cutoff",
                             "tfs", "top_a", "min_p", "mirostat"] if ooba else None,
        "samplers": ["top_k", "tfs_z", "typical_p", "top_p", "min_p", "temperature"]
        if llama else None,
        "stopping_strings": ST_STOP, "stop": ST_STOP, "truncation_length": max_context,
        "ban_eos_token": False, "skip_special_tokens": True, "top_a": 0, "tfs": 1,
        "epsilon_cutoff": 0 if ooba else None, "eta_cutoff": 0 if ooba else None,
        "mirostat_mode": 0, "mirostat_tau": 5, "mirostat_eta": 0.1, "custom_token_bans": "",
        "banned_strings": [], "api_type": api_type, "api_server": "http://127.0.0.1:5001",
        "legacy_api": False, "sampler_order": [6, 0, 1, 3, 4, 2, 5] if kcpp else None,
        "xtc_threshold": 0.1, "xtc_probability": 0,
    }
    if kcpp:
        params["grammar"] = ""
    if api_type == "vllm":
        params.update({"n": 1, "best_of": 1, "ignore_eos": False,
                       "spaces_between_special_tokens": True, "seed": None})
    else:
        params.update(_st_non_aphrodite(ooba, llama, amount_gen, max_context))
    if llama:
        params.update({"logit_bias": [], "grammar": "", "cache_prompt": True})
    if stream:
        params["stream"] = True
    body = _defined(params)
    return {k: v for k, v in body.items() if k in VLLM_KEYS} if api_type == "vllm" else body


def _st_non_aphrodite(ooba, llama, amount_gen, max_context):
    return {
        "rep_pen": 1.2, "rep_pen_range": 0, "repetition_penalty_range": 0,
        "encoder_repetition_penalty": 1 if ooba else None,
        "no_repeat_ngram_size": 0 if ooba else None, "penalty_alpha": 0 if ooba else None,
        "temperature_last": True if ooba else None, "do_sample": True if ooba else None,
        "seed": -1, "guidance_scale": 1, "negative_prompt": "", "grammar_string": "",
        "json_schema": {} if llama else None, "repeat_penalty": 1.2, "tfs_z": 1,
        "repeat_last_n": 0, "n_predict": amount_gen, "num_predict": amount_gen,
        "num_ctx": max_context, "mirostat": 0, "ignore_eos": False, "rep_pen_slope": 1,
    }


def st_chat_custom(messages, stream=False):
    """SillyTavern, API "Chat Completion", source Custom (OpenAI-compatible), defaults.

    Returns what its server posts to /v1/chat/completions: no names on chat messages, no
    character field, max_tokens 300, and the fields its Custom branch leaves undefined.
    """
    return {"messages": messages, "model": "", "temperature": 1.0, "max_tokens": 300,
            "stream": stream, "presence_penalty": 0, "frequency_penalty": 0, "top_p": 1.0,
            "logit_bias": {}}


def st_chat_messages(description, examples, greeting, chat):
    """The messages SillyTavern's default prompt manager sends for one character.

    examples: (user, character) pairs; chat: texts alternating user, character, ...,
    ending with the user.
    """
    messages = [
        {"role": "system", "content": f"Write {ST_CHAR}'s next reply in a fictional chat "
                                      f"between {ST_CHAR} and {ST_USER}."},
        {"role": "system", "content": description},
        {"role": "system", "content": "[Example Chat]"},
    ]
    for user, char in examples:
        messages.append({"role": "system", "name": "example_user", "content": user})
        messages.append({"role": "system", "name": "example_assistant", "content": char})
    messages += [{"role": "system", "content": "[Start a new Chat]"},
                 {"role": "assistant", "content": greeting}]
    for i, text in enumerate(chat):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return messages


def lite_generate(prompt, memory, genkey="KCPP4242"):
    """KoboldAI Lite (chat mode, local KoboldCpp endpoint), default localsettings.

    The body it posts to /api/extra/generate/stream (SSE, its local default) or
    /api/v1/generate: the params with the prompt inside, memory apart.
    """
    return {
        "n": 1, "max_context_length": 4096, "max_length": 200, "rep_pen": 1.07,
        "temperature": 0.7, "top_p": 0.92, "top_k": 100, "top_a": 0, "typical": 1, "tfs": 1,
        "rep_pen_range": 360, "rep_pen_slope": 0.7, "sampler_order": [6, 0, 1, 3, 4, 2, 5],
        "memory": memory, "trim_stop": True, "genkey": genkey, "min_p": 0,
        "dynatemp_range": 0, "dynatemp_exponent": 1, "smoothing_factor": 0,
        "banned_tokens": [], "render_special": False, "presence_penalty": 0,
        "logit_bias": {}, "prompt": prompt, "quiet": True,
        "stop_sequence": ["You:", "\nYou ", "\nAqua: "],
        "use_default_badwordsids": False, "bypass_eos": False,
    }


def agnai_kobold(prompt):
    """Agnaistic, format "kobold", its default preset ("Simple"): mapped settings + prompt."""
    return {
        "use_story": False, "use_memory": False, "use_authors_note": False,
        "use_world_info": False, "max_length": 300, "rep_pen": 1, "rep_pen_range": 1024,
        "rep_pen_slope": 1, "tfs": 1, "temperature": 0.8, "top_k": 0, "top_p": 1,
        "typical": 1, "top_a": 0, "sampler_order": [0, 1, 2, 3, 4, 5, 6], "min_p": 0.1,
        "prompt": prompt, "stop_sequence": ["\nYou:", "END_OF_DIALOG"],
    }


PERSONA = ("Aqua is a goddess of water who likes parties, gets into trouble and asks her "
           "friends for help when things go wrong.")
LINES = ["Hello Aqua, how are you today?", "I am fine! Shall we go to the lake?",
         "What would you like to eat tonight?", "I like fish and bread, and a cold drink."]


def st_pygmalion_prompt(turns: int) -> str:
    """A prompt as SillyTavern's Pygmalion context template lays a chat of turns lines out."""
    lines = [f"{ST_CHAR}'s Persona: {PERSONA}", "<START>"]
    for i in range(turns):
        speaker = ST_USER if i % 2 == 0 else ST_CHAR
        lines.append(f"{speaker}: {LINES[i % len(LINES)]}")
    return "\n".join(lines + [f"{ST_CHAR}:"])
