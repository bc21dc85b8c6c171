"""The prefix KV cache of ``TransformersLM``: the same outputs as the plain path, never states of other weights.

Every test compares an LM with the cache against one without it on the same tiny model, in float64: the cached
path adds up attention in another order than the plain one, and in float32 a random model's near-tied logits
could flip a greedy choice.
"""

import logging

import pytest
import torch

from parlmt.models import ModelConfig, TransformersLM, load_model
from parlmt.models.lm import PROMPTS_PER_LANE, TOKENS_PER_LANE, PrefixCache

# Logprobs come back in float32 (the RL loss's dtype) whatever the model's dtype: equal up to the rounding of
# that cast, two float32 ulps (1 ulp of a logprob near -12 is 9.5e-7: a fixed atol of 1e-6 failed on AMD EPYC).
FLOAT32_ROUNDING = {"rtol": 2**-22, "atol": 1e-12}
SHARED = list(range(1000, 1300))  # 300 tokens every prompt starts with, like the system prompt and tool docs


def tiny(tiny_model_dir):
    return load_model(ModelConfig(model=str(tiny_model_dir), dtype="float64"))


def pair(model, tokenizer) -> tuple[TransformersLM, TransformersLM]:
    """An LM with the prefix cache and one without, on the same weights."""
    return (TransformersLM(model=model, tokenizer=tokenizer, max_tokens=8),
            TransformersLM(model=model, tokenizer=tokenizer, max_tokens=8, prefix_cache=False))


def run(lm: TransformersLM, prompts: list[list[int]], **options) -> list:
    return lm.generate_ids(prompts, **{"max_tokens": 8} | options)


@pytest.fixture(scope="module")
def lms(tiny_model_dir):
    return pair(*tiny(tiny_model_dir))


def assert_same(cached, plain) -> None:
    assert [s.completion_ids for s in cached] == [s.completion_ids for s in plain]
    assert [s.text for s in cached] == [s.text for s in plain]
    assert [s.finish_reason for s in cached] == [s.finish_reason for s in plain]
    for with_cache, without in zip(cached, plain, strict=True):
        torch.testing.assert_close(with_cache.logprobs, without.logprobs, **FLOAT32_ROUNDING)


def reused_by(lm: TransformersLM, prompts: list[list[int]], **options) -> tuple[int, list]:
    """Cached tokens the call started from, and its samples."""
    before = lm.prefixes.reused_tokens
    samples = run(lm, prompts, **options)
    return lm.prefixes.reused_tokens - before, samples


def test_greedy_prompts_sharing_a_prefix_generate_what_the_plain_path_does(lms):
    cached, plain = lms
    cached.prefixes.clear()
    first = SHARED + [1, 2, 3]
    assert reused_by(cached, [first])[0] == 0
    for prompt, reusable in [(SHARED + [4, 5, 6, 7], 300),  # shares the prefix
                             (first, len(first) - 1),  # a repeat: the last token is computed for its logits
                             (SHARED, 299),  # a prefix of a cached prompt
                             (first + [8, 9], len(first)),  # extends a cached prompt
                             ([7, 7] + SHARED, 0)]:  # shares nothing
        reused, samples = reused_by(cached, [prompt])
        assert reused == reusable
        assert_same(samples, run(plain, [prompt]))


def test_a_batch_reuses_each_rows_own_prefix_and_generates_what_the_plain_batch_does(lms):
    cached, plain = lms
    cached.prefixes.clear()
    run(cached, [SHARED + [1, 2, 3]])
    # Rows reuse 300, 300, 0 and 303 tokens: padding sits between each row's cached part and its rest.
    batch = [SHARED + [4, 5], SHARED + [6, 7, 8, 9, 10], [7, 7, 7], SHARED + [1, 2, 3, 11]]
    reused, samples = reused_by(cached, batch)
    assert reused == 300 + 300 + 0 + 303
    assert_same(samples, run(plain, batch))
    # The G rollouts of one state: identical rows, each starting from the prompt the last call cached.
    group = [SHARED + [6, 7, 8, 9, 10]] * 3
    reused, samples = reused_by(cached, group)
    assert reused == 3 * (len(group[0]) - 1)
    assert_same(samples, run(plain, group))


def test_a_prefix_all_rows_share_is_computed_once_even_when_nothing_is_cached(lms):
    cached, plain = lms
    for group, reusable in [([SHARED + [4, 5, 6]] * 3, 3 * 302),  # the G rollouts of one state
                            ([SHARED + [4, 5], SHARED + [6, 7, 8]], 301 + 300)]:  # one state's docs, two requests
        cached.prefixes.clear()
        reused, samples = reused_by(cached, group)
        assert reused == reusable
        assert_same(samples, run(plain, group))
    cached.prefixes.clear()
    torch.manual_seed(2)
    reused, samples = reused_by(cached, [SHARED + [9]] * 3, temperature=1.0)
    assert reused == 3 * 300
    torch.manual_seed(2)
    assert_same(samples, run(plain, [SHARED + [9]] * 3, temperature=1.0))  # the one-row pass draws nothing


def test_a_long_new_prompt_beside_cached_ones_is_prefilled_alone_so_the_batch_stays_narrow(lms):
    cached, plain = lms
    cached.prefixes.clear()
    run(cached, [SHARED + [1, 2, 3]])
    fresh = list(range(2000, 2400))  # 400 new tokens: padding the other rows to it would compute 400 columns each
    batch = [SHARED + [1, 2, 3, 4], fresh, SHARED + [1, 2, 3, 5, 6]]
    reused, samples = reused_by(cached, batch)
    # The new prompt's own pass reuses nothing; in the batch every row then starts from its cached part, the
    # new prompt from all of it but its last token: the pass computes at most 3 columns a row, not 400.
    assert reused == 0 + 303 + (len(fresh) - 1) + 303
    assert_same(samples, run(plain, batch))


def test_sampled_logprobs_from_cached_states_match_a_fresh_forward_pass(lms):
    """The RL stage trusts these logprobs as the old policy's."""
    cached, _ = lms
    cached.prefixes.clear()
    run(cached, [SHARED + [1]])
    prompt = SHARED + [2, 3]
    torch.manual_seed(1)
    reused, [sample] = reused_by(cached, [prompt], temperature=0.7)
    assert reused == 300
    ids = torch.tensor([prompt + sample.completion_ids])
    with torch.no_grad():
        logits = cached.hf_model(ids).logits[0, len(prompt) - 1 : -1] / 0.7
    expected = torch.log_softmax(logits, -1).gather(-1, ids[0, len(prompt):, None])[:, 0]
    torch.testing.assert_close(torch.tensor(sample.logprobs, dtype=torch.float64), expected, **FLOAT32_ROUNDING)


def add_noise(model) -> None:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))


def optimizer_step(model) -> None:
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    model(torch.tensor([SHARED])).logits.sum().backward()
    optimizer.step()
    optimizer.zero_grad()


def load_other_weights(model) -> None:
    model.load_state_dict({name: 1.1 * tensor for name, tensor in model.state_dict().items()})


@pytest.mark.parametrize("change", [add_noise, optimizer_step, load_other_weights])
def test_changed_weights_never_use_states_of_the_old_ones(tiny_model_dir, change):
    model, tokenizer = tiny(tiny_model_dir)
    cached, plain = pair(model, tokenizer)
    old = run(cached, [SHARED + [1, 2, 3]])
    torch.manual_seed(0)
    change(model)
    model.eval()
    reused, new = reused_by(cached, [SHARED + [1, 2, 3]])
    assert reused == 0
    assert_same(new, run(plain, [SHARED + [1, 2, 3]]))
    assert new[0].logprobs != old[0].logprobs  # the change did change what the model computes


def test_switching_or_disabling_a_peft_adapter_drops_the_cache(tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny(tiny_model_dir)
    torch.manual_seed(0)
    lora = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    lora.add_adapter("other", LoraConfig(r=4, target_modules=["k_proj", "v_proj"], init_lora_weights=False))
    cached, plain = pair(lora, tokenizer)
    prompt = SHARED + [1, 2, 3]
    run(cached, [prompt])
    with lora.disable_adapter():
        reused, samples = reused_by(cached, [prompt])
        assert reused == 0
        assert_same(samples, run(plain, [prompt]))
    lora.set_adapter("other")
    reused, samples = reused_by(cached, [prompt])
    assert reused == 0
    assert_same(samples, run(plain, [prompt]))
    assert reused_by(cached, [prompt])[0] == len(prompt) - 1  # same weights again: the cache serves


def test_a_failed_call_leaves_the_cache_consistent(lms):
    cached, plain = lms
    cached.prefixes.clear()
    run(cached, [SHARED + [1, 2, 3]])
    entries = dict(cached.prefixes.entries)
    with pytest.raises(IndexError):  # a token id past the vocabulary: the whole pass fails, as a lane's would
        run(cached, [SHARED + [4, 5], SHARED + [len(cached.tokenizer) + 10**6]])
    assert list(cached.prefixes.entries) == list(entries)
    assert all(cached.prefixes.entries[key] is states for key, states in entries.items())
    reused, samples = reused_by(cached, [SHARED + [4, 5]])
    assert reused == 300
    assert_same(samples, run(plain, [SHARED + [4, 5]]))


def test_a_prompt_past_the_models_context_is_warned_about_and_computed_as_without_the_cache(lms, caplog):
    cached, plain = lms
    context = cached.hf_model.config.max_position_embeddings
    long = [1000 + i % 5000 for i in range(context + 2)]
    run(cached, [long[:-1]])
    with caplog.at_level(logging.WARNING, logger="parlmt.models.lm"):
        reused, samples = reused_by(cached, [long], max_tokens=4)
    assert reused == context + 1
    assert "exceeds the model's context" in caplog.text
    assert_same(samples, run(plain, [long], max_tokens=4))


def test_the_cache_is_bounded_and_can_be_turned_off(lms):
    cached, plain = pair(lms[0].hf_model, lms[0].tokenizer)
    cached.prefixes = PrefixCache(max_entries=2, max_tokens=800)
    a, b, c = ([n] * 50 + SHARED for n in (1, 2, 3))
    for prompt in (a, b, a + [9], c):
        run(cached, [prompt], max_tokens=1)
    # a + [9] replaced a (it covers it); c then pushed out the least recently used, b.
    assert list(cached.prefixes.entries) == [tuple(a + [9]), tuple(c)]
    run(cached, [[4] * 400], max_tokens=1)  # three entries: the least recently used goes
    assert list(cached.prefixes.entries) == [tuple(c), (4,) * 400]
    run(cached, [[5] * 801], max_tokens=1)  # longer than the whole budget: not kept
    assert len(cached.prefixes.entries) == 2
    cached.lanes(3)  # three callers at once keep three times what one does alive
    assert (cached.prefixes.max_entries, cached.prefixes.max_tokens) == (3 * PROMPTS_PER_LANE, 3 * TOKENS_PER_LANE)
    cached.lanes(1)
    assert cached.prefixes.max_entries == 3 * PROMPTS_PER_LANE
    cached.prefix_cache = False
    assert not cached.prefixes.entries
    assert reused_by(cached, [c], max_tokens=1)[0] == 0 and not cached.prefixes.entries
    run(plain, [c], max_tokens=1)
    assert not plain.prefixes.entries


def test_chat_calls_sharing_a_system_prompt_reuse_it(lms):
    cached, plain = lms
    cached.prefixes.clear()
    system = {"role": "system", "content": "You call tools. " + "Tool docs: move_file(source, destination). " * 40}
    first = cached.generate([system, {"role": "user", "content": "Move a.txt to b/."}])
    before = cached.prefixes.reused_tokens
    question = [system, {"role": "user", "content": "List the files."}]
    sample = cached.generate(question)
    shared = next(i for i, (a, b) in enumerate(zip(first.prompt_ids, sample.prompt_ids, strict=False)) if a != b)
    assert cached.prefixes.reused_tokens - before == shared > 300  # everything up to the user's words
    assert_same([sample], [plain.generate(question)])


def test_a_model_generating_without_a_kv_cache_takes_the_plain_path(tiny_model_dir):
    model, tokenizer = tiny(tiny_model_dir)
    cached, plain = pair(model, tokenizer)
    run(cached, [SHARED + [1]])
    model.generation_config.use_cache = False  # as under gradient checkpointing
    reused, samples = reused_by(cached, [SHARED + [2]])
    assert reused == 0
    assert_same(samples, run(plain, [SHARED + [2]]))
