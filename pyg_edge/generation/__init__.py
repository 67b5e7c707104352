"""One CTranslate2 call: a converted model, its tokenizer, sampling, stopping and streaming."""
