"""Run a transformers causal LM in-process as a DSPy language model.

``TransformersLM`` is a ``dspy.BaseLM`` backed by a DSPy 3.4 engine (``complete(Request)
-> Response``), so DSPy's adapters, history, usage tracking, callbacks and MLflow
autolog treat it like any hosted model. Each response carries token usage, per-token
logprobs and, in ``provider_data``, the exact prompt and completion token ids; the RL
stage trains on those ids directly (no re-tokenization drift). With
``record_samples=True`` every generation is also appended to ``lm.samples``.

Responses are never cached: the weights behind this LM change during training. What is cached
is the model's keys and values for recent prompts (``PrefixCache``): most of every prompt (system
prompt, tool docs) repeats across the calls of an episode, so a call computes only the part after
the longest prefix it shares with a recent prompt. The cache belongs to one set of weights and is
dropped when they change.
"""

import asyncio
import inspect
import itertools
import logging
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import dspy
import torch
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.lm15 import TokenLogprob as LM15TokenLogprob

from parlmt.models.loading import ModelConfig, load_model

if TYPE_CHECKING:
    from transformers import DynamicCache

log = logging.getLogger(__name__)
# Uncached prompt tokens above which a row of a batch is prefilled on its own (``_prefill_alone``): a padded
# pass makes every row as wide as the widest, so a long uncached part is cheaper computed once, alone.
PREFILL_ALONE = 256
# What one lane keeps alive at once: a prompt per module of a program (Summarize, Plan, Act) and the user's,
# of about 2k tokens each. With less room, lanes evict each other's prefixes before they are reused.
PROMPTS_PER_LANE, TOKENS_PER_LANE = 4, 8192


@dataclass
class Sample:
    """One generation: what the RL stage needs to score and train on a module call."""

    messages: list[dict]
    prompt_ids: list[int]
    completion_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: str
    tags: dict = field(default_factory=dict)


def request_to_chat(request) -> tuple[list[dict], list[dict] | None]:
    """Convert a DSPy/lm15 ``Request`` into chat-template messages and OpenAI-style tools."""
    messages = []
    if request.system is not None:
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system)
        messages.append({"role": "system", "content": system})
    for message in request.messages:
        role = "user" if message.role == "developer" else message.role
        messages.append({"role": role, "content": message.text or ""})
    tools = [
        {"type": "function", "function": {"name": t.name, "description": t.description or "",
                                          "parameters": t.parameters}}
        for t in request.tools
        if getattr(t, "type", None) == "function"
    ]
    return messages, tools or None


class TransformersEngine:
    """The DSPy engine: one chat request in, one generated response out."""

    def __init__(self, lm: "TransformersLM"):
        self.lm = lm

    def complete(self, request) -> Response:
        messages, tools = request_to_chat(request)
        config = request.config
        sample = self.lm.generate(
            messages,
            tools=tools,
            temperature=config.temperature if config.temperature is not None else 0.0,
            max_tokens=config.max_tokens,
            top_p=config.top_p,
            top_k=config.top_k,
            stop=config.stop,
        )
        tokenizer = self.lm.tokenizer
        return Response(
            id=f"parlmt-{uuid.uuid4().hex[:12]}",
            model=self.lm.model,
            message=Message.assistant([TextPart(sample.text)]),
            finish_reason=sample.finish_reason,
            usage=Usage(input_tokens=len(sample.prompt_ids), output_tokens=len(sample.completion_ids)),
            logprobs=tuple(
                LM15TokenLogprob(token=tokenizer.decode([tid]), logprob=lp, token_id=tid)
                for tid, lp in zip(sample.completion_ids, sample.logprobs, strict=True)
            ),
            provider_data={"prompt_ids": sample.prompt_ids, "completion_ids": sample.completion_ids},
        )

    def stream(self, request):
        from dspy.lm15 import response_to_events

        return response_to_events(self.complete(request))

    def close(self) -> None:
        pass


class AsyncTransformersEngine:
    """Async face of the same engine; generation runs in a worker thread."""

    def __init__(self, sync: TransformersEngine):
        self.sync = sync

    async def complete(self, request) -> Response:
        return await asyncio.to_thread(self.sync.complete, request)

    async def stream(self, request):
        for event in self.sync.stream(request):
            yield event

    async def aclose(self) -> None:
        pass


class TransformersLM(dspy.BaseLM):
    """A transformers model (optionally with a PEFT adapter) as an in-process DSPy LM.

    Args:
        config: which model to load (``ModelConfig``); ignored when ``model`` is given.
        model, tokenizer: an already loaded model and tokenizer (e.g. the policy being trained).
        temperature: default sampling temperature; 0 is greedy and deterministic.
        max_tokens: default cap on generated tokens.
        record_samples: append every generation to ``self.samples``.
        batcher: the ``GenerationBatcher`` this LM's calls go through (set by ``lanes``).
        prefix_cache: reuse the keys and values of recent prompts' shared prefixes (``self.prefixes``, a
            ``PrefixCache``); outputs are the same either way. Settable; turning it off frees the entries.
    """

    def __init__(
        self,
        config: ModelConfig | None = None,
        *,
        model=None,
        tokenizer=None,
        temperature: float = 0.0,
        max_tokens: int = 512,
        record_samples: bool = False,
        name: str | None = None,
        batcher: "GenerationBatcher | None" = None,
        prefix_cache: bool = True,
    ):
        config = config or ModelConfig()
        if model is None:
            model, tokenizer = load_model(config)
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with the model")
        super().__init__(name or f"local/{config.model}", "chat", temperature, max_tokens, cache=False)
        self.hf_model, self.tokenizer = model, tokenizer
        self.record_samples = record_samples
        self.batcher, self.lane = batcher, 0
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self.prefixes = PrefixCache()
        self.prefix_cache = prefix_cache
        self._engine_spec = TransformersEngine(self)
        self._async_engine_spec = AsyncTransformersEngine(self._engine_spec)
        self._cache_responses = False

    @property
    def prefix_cache(self) -> bool:
        return self._prefix_cache

    @prefix_cache.setter
    def prefix_cache(self, on: bool) -> None:
        with self._lock:
            self._prefix_cache = on
            if not on:
                self.prefixes.clear()

    def generate(
        self,
        messages: list[dict],
        *,
        tools: list[dict] | None = None,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        top_p: float | None = None,
        top_k: int | None = None,
        stop: tuple[str, ...] = (),
    ) -> Sample:
        """Render ``messages`` (and ``tools``) with the chat template and generate one completion
        (through the batcher, for a lane of ``lanes``)."""
        prompt_ids = self.tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True,
                                                        tokenize=True, return_dict=True)["input_ids"]
        options = {"temperature": temperature, "max_tokens": max_tokens or self.kwargs.get("max_tokens") or 512,
                   "top_p": top_p, "top_k": top_k, "stop": tuple(stop)}
        if self.batcher is None:
            sample = self.generate_ids([list(prompt_ids)], **options)[0]
        else:
            sample = self.batcher.generate(list(prompt_ids), options, self.lane)
        sample.messages = messages
        if self.record_samples:
            self.samples.append(sample)
        return sample

    def generate_ids(self, prompts: list[list[int]], temperature: float = 0.0, max_tokens: int = 512,
                     top_p: float | None = None, top_k: int | None = None, stop: tuple[str, ...] = ()) -> list[Sample]:
        """Complete each prompt (token ids) in one padded ``generate``: samples with their log-probs.

        With the prefix cache on, each row starts from the cached states of its longest cached prefix,
        and a row with a long uncached part is prefilled on its own first (``_prefill_alone``)."""
        tokenizer, model = self.tokenizer, self.hf_model
        sampling = temperature > 0
        options = {"do_sample": sampling, "max_new_tokens": max_tokens, "pad_token_id": tokenizer.pad_token_id,
                   "return_dict_in_generate": True, "output_logits": True}
        if sampling:
            options |= {"temperature": temperature, "top_p": top_p or 1.0, "top_k": top_k or 0}
        else:
            # Neutralise sampling knobs a model's generation_config may carry, so greedy stays greedy.
            options |= {"temperature": None, "top_p": None, "top_k": None}
        if stop:
            options |= {"stop_strings": list(stop), "tokenizer": tokenizer}
        context = getattr(model.config.get_text_config(), "max_position_embeddings", None)
        if context and max(map(len, prompts)) + max_tokens > context:
            log.warning("a prompt of %d tokens plus %d new ones exceeds the model's context (%d): the continuation "
                        "runs on positions it was not trained on", max(map(len, prompts)), max_tokens, context)
        with self._lock, torch.no_grad():
            if self._prefix_cache:
                self.prefixes.check(model)
            if self._prefix_cache and len(prompts) > 1:
                self._prefill_alone(prompts, options)
            out, width = self._generate(prompts, options)
        eos = _eos_ids(model, tokenizer)
        samples = []
        for row, prompt in enumerate(prompts):
            generated = out.sequences[row, width:].tolist()
            length = next((i + 1 for i, token in enumerate(generated) if token in eos), len(generated))
            completion_ids = generated[:length]  # a finished row is padded until the others finish
            logits = torch.stack([step[row] for step in out.logits[:length]]).float()
            if sampling:
                logits = logits / temperature
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(completion_ids,
                                                                                 device=logits.device)[:, None])
            ended = bool(completion_ids) and completion_ids[-1] in eos
            samples.append(Sample(
                messages=[],
                prompt_ids=list(prompt),
                completion_ids=completion_ids,
                logprobs=logprobs[:, 0].tolist(),
                text=tokenizer.decode(completion_ids, skip_special_tokens=True),
                finish_reason="stop" if ended or length < max_tokens else "length",
            ))
        return samples

    def _generate(self, prompts: list[list[int]], options: dict) -> tuple:
        """One ``generate`` over the prompts, from their cached prefixes: its output, and the column where
        the new tokens start (lock held).

        A row is laid out as cached prefix, padding, rest of the prompt (plain left padding when nothing
        is cached). Position ids follow the attention mask, so every token keeps its position in its own
        prompt and the result is what the plain padded batch computes."""
        model, pad_id = self.hf_model, self.tokenizer.pad_token_id
        reused, cache = self.prefixes.lookup(model, prompts) if self._prefix_cache else ([0] * len(prompts), None)
        cached = max(reused)
        rests = [prompt[n:] for prompt, n in zip(prompts, reused, strict=True)]
        rest_width = max(map(len, rests))
        pads = [cached - n + rest_width - len(rest) for n, rest in zip(reused, rests, strict=True)]
        input_ids = torch.tensor([prompt[:n] + [pad_id] * pad + rest for prompt, n, pad, rest
                                  in zip(prompts, reused, pads, rests, strict=True)], device=model.device)
        attention_mask = torch.tensor([[1] * n + [0] * pad + [1] * len(rest) for n, pad, rest
                                       in zip(reused, pads, rests, strict=True)], device=model.device)
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, cache=cache, **options)
        if self._prefix_cache:
            self.prefixes.store(model, prompts, out.cache, attention_mask)
        return out, cached + rest_width

    def _prefill_alone(self, prompts: list[list[int]], options: dict) -> None:
        """Prefill into the cache, one row at a time, every prompt whose uncached part is long (lock held).

        A padded pass computes every row as wide as the widest: beside one new 2,000-token prompt, three
        prompts that only add a step's observations to cached ones would each compute 2,000 columns too.
        Prefilled alone first, every row of the pass is short; and the G rollouts of one state compute
        their common prompt once (the first row's pass caches it for the others)."""
        for prompt in prompts:
            if len(prompt) - self.prefixes.cached_length(prompt) > PREFILL_ALONE:
                # One greedy token (no random draw, so sampling stays as without the cache): the pass is a
                # prefill, and it caches the prompt it was given.
                self._generate([prompt], options | {"max_new_tokens": 1, "do_sample": False, "temperature": None,
                                                    "top_p": None, "top_k": None})

    def lanes(self, count: int) -> list["TransformersLM"]:
        """``count`` LMs on this one's weights, one per thread, whose concurrent calls share forward
        passes (``GenerationBatcher``); each records its own samples when this LM records them (RL
        rollouts do, evaluations don't: a long evaluation would keep every generation). A lane's thread must call
        ``lane.batcher.leave()`` when it stops generating, so the others do not wait for it."""
        batcher = GenerationBatcher(self, count)
        self.prefixes.hold(count)
        lanes = [TransformersLM(model=self.hf_model, tokenizer=self.tokenizer, name=self.model,
                                temperature=self.kwargs.get("temperature", 0.0),
                                max_tokens=self.kwargs.get("max_tokens", 512), record_samples=self.record_samples,
                                batcher=batcher)
                 for _ in range(count)]
        for number, lane in enumerate(lanes):
            lane.lane = number
        return lanes

    def dump_state(self) -> dict:
        # The weights are not part of a saved DSPy program; record only what identifies them.
        return {"model": self.model, "temperature": self.kwargs.get("temperature"),
                "max_tokens": self.kwargs.get("max_tokens")}


class GenerationBatcher:
    """Serves the ``generate`` calls of several threads (one per lane) with shared forward passes.

    A call waits until every lane still playing has a call waiting, then one padded ``generate_ids``
    serves them all, in lane order, so the batches (and the samples drawn) do not depend on thread
    timing. Calls with other options than the first lane's wait for the next pass.
    """

    def __init__(self, lm: TransformersLM, lanes: int):
        self.lm, self.playing = lm, lanes
        self.waiting: list[dict] = []
        self.busy = False
        self.condition = threading.Condition()

    def generate(self, prompt_ids: list[int], options: dict, lane: int) -> Sample:
        request = {"lane": lane, "prompt": prompt_ids, "options": options, "sample": None, "error": None}
        with self.condition:
            self.waiting.append(request)
            self.condition.notify_all()
            while request["sample"] is None and request["error"] is None:
                if not self.busy and len(self.waiting) >= self.playing:
                    self._run()
                else:
                    self.condition.wait()
        if request["error"] is not None:
            raise request["error"]
        return request["sample"]

    def leave(self) -> None:
        """This thread's lane stops generating (its rollout ended, or failed)."""
        with self.condition:
            self.playing -= 1
            self.condition.notify_all()

    def _run(self) -> None:
        """One pass over the waiting calls that share the first lane's options (lock held on entry and exit)."""
        self.waiting.sort(key=lambda r: r["lane"])
        options = self.waiting[0]["options"]
        batch = [r for r in self.waiting if r["options"] == options]
        self.waiting = [r for r in self.waiting if r["options"] != options]
        self.busy = True
        self.condition.release()
        try:
            samples = self.lm.generate_ids([r["prompt"] for r in batch], **options)
            for request, sample in zip(batch, samples, strict=True):
                request["sample"] = sample
        except Exception as error:  # every caller of the pass sees it
            for request in batch:
                request["error"] = error
        finally:
            self.condition.acquire()
            self.busy = False
            self.condition.notify_all()


class PrefixCache:
    """The keys and values of recent prompts under one set of weights, so that a prompt sharing a prefix
    with one of them computes only the rest.

    An entry is one prompt's states, per layer ``(keys, values)`` of shape ``[heads, tokens, head_dim]``.
    ``check`` compares the weights' fingerprint (``weights_fingerprint``) with the entries' and drops
    them all when it changed; callers hold the LM's lock and call it once per ``generate_ids`` before
    any lookup, and ``store`` compares again (the weights may change while generating). At most
    ``max_entries`` prompts and ``max_tokens`` tokens are kept (the least recently used go first; the
    student's states take 12 KB a token in bfloat16, 24 KB in float32); ``hold`` makes room for lanes.
    Only models whose ``generate`` returns a plain ``DynamicCache`` of full-attention layers are cached;
    others take the plain path.
    """

    def __init__(self, max_entries: int = 8, max_tokens: int = 16384):
        self.max_entries, self.max_tokens = max_entries, max_tokens
        self.entries: OrderedDict[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] = OrderedDict()
        self.fingerprint: tuple | None = None
        self.positions_from_mask = False  # of the model checked last: whether padding can sit inside a row
        self.prompt_tokens = self.reused_tokens = 0  # totals over all lookups, for measuring

    def clear(self) -> None:
        self.entries.clear()
        self.fingerprint = None

    def hold(self, lanes: int) -> None:
        """Grow the bounds (never shrink them) to what ``lanes`` concurrent callers keep alive."""
        self.max_entries = max(self.max_entries, PROMPTS_PER_LANE * lanes)
        self.max_tokens = max(self.max_tokens, TOKENS_PER_LANE * lanes)

    def cached_length(self, prompt: list[int]) -> int:
        """How many leading tokens of ``prompt`` have cached states."""
        return max((_shared(prompt, key) for key in self.entries), default=0)

    def lookup(self, model, prompts: list[list[int]]) -> tuple[list[int], "DynamicCache | None"]:
        """How many leading tokens of each prompt have cached states, and those states as one batch cache
        (each row's cached tokens first, then zeros up to the longest; None when nothing is cached).
        The last token of a prompt is always computed: its logits give the first new token."""
        from transformers import DynamicCache

        # With use_cache off (as under gradient checkpointing) generate recomputes every step and returns no cache.
        if model.generation_config.use_cache is False or not self.positions_from_mask:
            return [0] * len(prompts), None
        best = [max(((_shared(prompt, key), key) for key in self.entries), default=(0, None)) for prompt in prompts]
        reused = [max(0, min(n, len(prompt) - 1)) for (n, _), prompt in zip(best, prompts, strict=True)]
        self.prompt_tokens += sum(map(len, prompts))
        self.reused_tokens += sum(reused)
        cached = max(reused)
        if cached == 0:
            return reused, None
        for _, key in best:
            if key is not None:
                self.entries.move_to_end(key)
        layers = []
        for index, (keys, values) in enumerate(next(iter(self.entries.values()))):
            batch_keys = keys.new_zeros(len(prompts), keys.shape[0], cached, keys.shape[2])
            batch_values = values.new_zeros(len(prompts), values.shape[0], cached, values.shape[2])
            for row, ((_, key), n) in enumerate(zip(best, reused, strict=True)):
                if n:
                    batch_keys[row, :, :n] = self.entries[key][index][0][:, :n]
                    batch_values[row, :, :n] = self.entries[key][index][1][:, :n]
            layers.append((batch_keys, batch_values))
        return reused, DynamicCache(layers)

    def store(self, model, prompts: list[list[int]], cache, attention_mask: torch.Tensor) -> None:
        """Keep each prompt's states from the cache ``generate`` returned, whose first columns hold the
        prompts laid out as ``attention_mask`` says (padding where it is 0)."""
        from transformers.cache_utils import DynamicCache, DynamicLayer

        if weights_fingerprint(model) != self.fingerprint:  # the weights changed while generating
            self.clear()
            return
        plain = type(cache) is DynamicCache and all(type(layer) is DynamicLayer for layer in cache.layers)
        if not plain or cache.get_seq_length() < attention_mask.shape[1]:
            return
        for row, prompt in enumerate(prompts):
            key = tuple(prompt)
            if len(key) > self.max_tokens or any(other[: len(key)] == key for other in self.entries):
                continue  # too long to keep, or an entry already covers it
            for other in [other for other in self.entries if key[: len(other)] == other]:
                del self.entries[other]  # the new entry covers it
            columns = attention_mask[row].nonzero()[:, 0]
            self.entries[key] = [(layer.keys[row].index_select(1, columns), layer.values[row].index_select(1, columns))
                                 for layer in cache.layers]
        while len(self.entries) > self.max_entries or sum(map(len, self.entries)) > self.max_tokens:
            self.entries.popitem(last=False)

    def check(self, model) -> None:
        """Drop every entry when ``model``'s weights are not those the entries were computed with."""
        fingerprint = weights_fingerprint(model)
        if fingerprint != self.fingerprint:
            self.entries.clear()
            self.fingerprint = fingerprint
            self.positions_from_mask = _positions_from_mask(model)


def weights_fingerprint(model) -> tuple:
    """Changes whenever the weights a forward pass uses may have: the model object; each parameter's and
    buffer's identity, storage address and in-place version counter (optimizer steps, ``copy_``,
    ``load_state_dict`` and ``add_`` bump it; ``.to()`` moves the storage); and PEFT's adapter state
    (active, merged, disabled), since a merge writes through ``.data``, which bumps no counter.
    Writing through ``.data`` yourself is the one change it cannot see: ``clear()`` the cache then."""
    tensors = tuple((id(t), t.data_ptr(), t._version) for t in itertools.chain(model.parameters(), model.buffers()))
    adapters = tuple((m.disable_adapters, tuple(m.active_adapters), tuple(m.merged_adapters))
                     for m in model.modules() if hasattr(m, "merged_adapters"))
    return id(model), tensors, adapters


def _positions_from_mask(model) -> bool:
    """Whether ``generate`` gives the model position ids counted from the attention mask (it does when the
    forward takes them), so that padding between a row's cached part and its rest moves no position."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "position_ids" in inspect.signature(base.forward).parameters


def _shared(prompt: list[int], key: tuple[int, ...]) -> int:
    """The length of the common prefix of a prompt and a cached one."""
    return next((i for i, (a, b) in enumerate(zip(prompt, key, strict=False)) if a != b), min(len(prompt), len(key)))


def _eos_ids(model, tokenizer) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    return ids | {tokenizer.eos_token_id}


def make_lm(spec: str, max_tokens: int, temperature: float = 0.0, adapter: str | None = None,
            api_base: str | None = None, **litellm_options):
    """A DSPy LM: the in-process transformers model for local specs, else litellm via ``dspy.LM``
    (``litellm_options`` such as ``api_key``, ``timeout``, ``num_retries`` go to ``dspy.LM``)."""
    local = spec.startswith("embedded:") or Path(spec).expanduser().exists()
    if local:
        return TransformersLM(ModelConfig(model=spec, adapter=adapter), max_tokens=max_tokens, temperature=temperature)
    if adapter:
        raise ValueError("--adapter applies to in-process models only (embedded:*, a folder or a .gguf)")
    return dspy.LM(spec, max_tokens=max_tokens, temperature=temperature, api_base=api_base, cache=False,
                   **litellm_options)
