"""Models to audit from the command line: ``MODEL_SPEC`` is a preset (a small
random-weight transformers model of a known family, built locally), a local path, or a
transformers model id already in the local cache (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path

import torch

#: preset -> (transformers config class, its arguments, the model class). Four layers,
#: hidden 256, so an audit takes seconds on a CPU; head dims 64 (gemma: 32).
PRESETS = {
    "llama": ("LlamaConfig", dict(num_attention_heads=4, num_key_value_heads=2),
              "LlamaForCausalLM"),
    "mistral": ("MistralConfig", dict(num_attention_heads=4, num_key_value_heads=2,
                                      sliding_window=None), "MistralForCausalLM"),
    "qwen2": ("Qwen2Config", dict(num_attention_heads=4, num_key_value_heads=2),
              "Qwen2ForCausalLM"),
    "gemma": ("GemmaConfig", dict(num_attention_heads=8, num_key_value_heads=1, head_dim=32),
              "GemmaForCausalLM"),
    "gpt2": ("GPT2Config", dict(n_embd=256, n_layer=4, n_head=4, n_positions=256,
                                vocab_size=1024, bos_token_id=0, eos_token_id=0),
             "GPT2LMHeadModel"),
    "bert": ("BertConfig", dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                                intermediate_size=704, vocab_size=1024), "BertModel"),
}
_DECODER = dict(hidden_size=256, intermediate_size=704, num_hidden_layers=4, vocab_size=1024,
                max_position_embeddings=256)


def build(spec: str, seed: int = 0) -> torch.nn.Module:
    """The model ``spec`` names, in float32 and eval mode; ``ValueError`` naming what
    was tried when it names none."""
    import transformers

    if spec in PRESETS:
        config_name, arguments, model_name = PRESETS[spec]
        if "n_embd" not in arguments and "hidden_size" not in arguments:
            arguments = {**_DECODER, **arguments}
        config = getattr(transformers, config_name)(**arguments, attn_implementation="sdpa")
        torch.manual_seed(seed)
        return getattr(transformers, model_name)(config).eval()
    try:
        auto = transformers.AutoModelForCausalLM
        return auto.from_pretrained(spec, local_files_only=True, torch_dtype=torch.float32,
                                    attn_implementation="sdpa").eval()
    except (OSError, ValueError) as exc:
        where = "a local path" if Path(spec).exists() else "a model id in the local cache"
        raise ValueError(f"model: {spec!r} is not a preset ({', '.join(PRESETS)}) and "
                         f"not {where} that loads ({type(exc).__name__}: {exc})") from None


def example_inputs(model: torch.nn.Module, tokens: int = 32, batch: int = 1,
                   seed: int = 0) -> dict[str, torch.Tensor]:
    """``{"input_ids": (batch, tokens)}`` of random token ids the model accepts."""
    vocab = getattr(model.config, "vocab_size", 1024)
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (batch, tokens), generator=gen)
    return {"input_ids": ids}
