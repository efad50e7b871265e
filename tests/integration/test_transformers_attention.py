"""``attn_implementation="hetero"`` in transformers (small configs, random weights, no
download): greedy ``generate()`` of a Llama and of a Mistral (sliding window) gives the
tokens SDPA gives, padded batches included (decode steps on ``attention`` over the
tensors as they lie, the padded prompt on ``varlen_attention``); a BERT the hidden states
SDPA gives, padded or not; a Gemma 2 (softcap) the tokens eager gives; ``generate_batch``
with ``"paged|hetero"`` on four prompts of different lengths gives the tokens
``"paged|eager"`` gives, its prefill on ``varlen_attention`` and its decode steps on
``paged_attention`` over transformers' own block table; a training step the loss and
gradients SDPA (or eager) gives."""

from __future__ import annotations

from unittest import mock

import pytest
import torch

transformers = pytest.importorskip("transformers")

import hetero  # noqa: E402
from hetero.integrations import transformers as integration  # noqa: E402
from hetero.ops.attention import api as attention_api  # noqa: E402
from hetero.ops.paged_attention import api as paged_api  # noqa: E402
from hetero.ops.varlen_attention import api as varlen_api  # noqa: E402

SMALL = dict(vocab_size=256, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)


@pytest.fixture(scope="module", autouse=True)
def _registered():
    integration.register()


def _model(cls, config, implementation):
    torch.manual_seed(0)
    model = cls(config).eval()
    model.set_attn_implementation(implementation)
    return model


def _counting():
    """Patches that count the calls of the public serving functions."""
    counts = {"varlen": 0, "paged": 0, "attention": 0}

    def wrap(name, fn):
        def counted(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)
        return counted

    patches = [mock.patch.object(integration, "varlen_attention",
                                 wrap("varlen", varlen_api.varlen_attention)),
               mock.patch.object(integration, "paged_attention",
                                 wrap("paged", paged_api.paged_attention)),
               mock.patch.object(integration, "attention",
                                 wrap("attention", attention_api.attention))]
    return counts, patches


@pytest.mark.parametrize("family", ["llama", "mistral"])
def test_generate_gives_the_sdpa_tokens(family):
    if family == "llama":
        cls, config = transformers.LlamaForCausalLM, transformers.LlamaConfig(**SMALL)
    else:  # a window shorter than the prompt, so it masks something
        cls = transformers.MistralForCausalLM
        config = transformers.MistralConfig(**SMALL, sliding_window=8)
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, :5] = 0  # a left-padded second prompt
    want = _model(cls, config, "sdpa").generate(ids, attention_mask=mask, max_new_tokens=16,
                                                 do_sample=False)
    counts, patches = _counting()
    with patches[0], patches[1], patches[2]:
        got = _model(cls, config, "hetero").generate(ids, attention_mask=mask,
                                                     max_new_tokens=16, do_sample=False)
    assert torch.equal(got, want)
    # the padded prompt packed (skipping the padding and the window); each decode step
    # read in place, the padding and the window masked
    assert counts["varlen"] == 2 and counts["attention"] == 2 * 15


@pytest.mark.parametrize("padded", [False, True], ids=["full", "right-padded"])
def test_an_encoder_attends_both_ways(padded):
    """A BERT (not causal): hetero's hidden states match SDPA's at every real token, a
    right-padded batch included (its packed rows are not causal either)."""
    config = transformers.BertConfig(vocab_size=256, hidden_size=128, intermediate_size=256,
                                     num_hidden_layers=2, num_attention_heads=4)
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(ids)
    if padded:
        mask[1, 15:] = 0
    states = {}
    for implementation in ("sdpa", "hetero"):
        with torch.no_grad():
            states[implementation] = _model(transformers.BertModel, config, implementation)(
                ids, attention_mask=mask).last_hidden_state
    keep = mask.bool()
    torch.testing.assert_close(states["hetero"][keep], states["sdpa"][keep], rtol=0, atol=1e-5)


def test_gemma2_softcap_gives_the_eager_tokens():
    config = transformers.Gemma2Config(**SMALL, head_dim=32, sliding_window=8,
                                       attn_logit_softcapping=5.0, final_logit_softcapping=30.0)
    ids = torch.randint(0, 256, (1, 20), generator=torch.Generator().manual_seed(2))
    cls = transformers.Gemma2ForCausalLM
    want = _model(cls, config, "eager").generate(ids, max_new_tokens=12, do_sample=False)
    got = _model(cls, config, "hetero").generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(got, want)


def test_generate_batch_runs_on_paged_attention_with_transformers_block_table():
    config = transformers.LlamaConfig(**SMALL)
    cls = transformers.LlamaForCausalLM
    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 256, (n,), generator=gen).tolist() for n in (5, 17, 9, 30)]
    settings = transformers.GenerationConfig(max_new_tokens=12, do_sample=False)
    want = _model(cls, config, "paged|eager").generate_batch(prompts, generation_config=settings)
    counts, patches = _counting()
    with patches[0], patches[1]:
        got = _model(cls, config, "paged|hetero").generate_batch(prompts,
                                                                 generation_config=settings)
    assert [got[k].generated_tokens for k in sorted(got)] == \
        [want[k].generated_tokens for k in sorted(want)]
    assert counts["varlen"] > 0 and counts["paged"] > 0


@pytest.mark.parametrize("family", ["llama", "mistral", "gemma2"])
def test_a_training_step_gives_the_gradients_of_pytorchs_attention(family):
    """Under autograd (a forward outside torch.no_grad(), a training step) a left-padded
    batch gives the loss and gradients SDPA gives (eager for the softcap), on
    torch.ops.hetero.attention with hetero's backward; the softcap, which no hetero
    operator differentiates, in PyTorch's operations, counted as such."""
    if family == "llama":
        cls, config, baseline = transformers.LlamaForCausalLM, transformers.LlamaConfig(
            **SMALL), "sdpa"
    elif family == "mistral":
        cls, config, baseline = transformers.MistralForCausalLM, transformers.MistralConfig(
            **SMALL, sliding_window=8), "sdpa"
    else:
        cls, baseline = transformers.Gemma2ForCausalLM, "eager"
        config = transformers.Gemma2Config(**SMALL, head_dim=32, sliding_window=8,
                                           attn_logit_softcapping=5.0)
    ids = torch.randint(0, 256, (2, 20), generator=torch.Generator().manual_seed(5))
    mask = torch.ones_like(ids)
    mask[1, :6] = 0
    labels = ids.masked_fill(mask == 0, -100)
    # nor a prediction made at padding (a query that sees no key: zeros here, any value in
    # PyTorch's implementations)
    labels[:, 1:] = labels[:, 1:].masked_fill(mask[:, :-1] == 0, -100)
    results = {}
    for implementation in (baseline, "hetero"):
        model = _model(cls, config, implementation).train()
        hetero.reset_stats()
        loss = model(ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        results[implementation] = loss.detach(), {
            name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    (want_loss, want), (got_loss, got) = results[baseline], results["hetero"]
    torch.testing.assert_close(got_loss, want_loss, rtol=0, atol=1e-5)
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5, msg=name)
    stats = hetero.stats()
    if family == "gemma2":
        (reason,) = stats.fallbacks["attention"]
        assert "softcap" in reason and stats.fallbacks["attention"][reason].calls == 2
    else:
        assert sum(c.calls for c in stats.served["attention_backward"].values()) == 2
