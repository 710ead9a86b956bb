"""Text generation from a language model: prime the state with a prefix, then feed each prediction back.

The model is any module with ``model(tokens, state=None) -> (logits, state)``, ``tokens`` a LongTensor
(B, T) and ``logits`` (B, T, V). ``strategy="greedy"`` is d2l's ``predict`` (argmax); ``"sample"`` draws
from ``softmax(logits / temperature)``, optionally restricted to the ``top_k`` most likely tokens and then
to the nucleus (the smallest set of most likely tokens whose probability reaches ``top_p``).
After the prefix, an rnnkit :class:`~rnnkit.models.LanguageModel` feeds each token through
``LanguageModel.step`` (the layer's one-token stepper); any other model is called on (1, 1) tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from rnnkit.data.vocab import Vocab
from rnnkit.models import LanguageModel

STRATEGIES = ("greedy", "sample")


def filter_logits(logits: Tensor, *, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> Tensor:
    """Scaled logits (V,) with every token outside the top-k / top-p set at -inf.

    Order as in common practice: temperature, then top-k, then top-p on the renormalised top-k distribution.
    The most likely token always survives, so the result is never all -inf.
    """
    logits = logits / temperature
    if 0 < top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        probs, order = torch.sort(torch.softmax(logits, dim=-1), descending=True)
        mass_before = torch.cumsum(probs, dim=-1) - probs  # probability of the strictly more likely tokens
        drop = mass_before >= top_p  # the nucleus already holds top_p without this token
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return logits


def _check(strategy: str, temperature: float, top_k: int, top_p: float, num_tokens: int) -> None:
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; use 'greedy' or 'sample'")
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    if temperature < 0 or temperature != temperature:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    if top_k < 0:
        raise ValueError(f"top_k must be >= 0 (0 = off), got {top_k}")
    if not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p}")
    if strategy == "greedy" and (temperature not in (0.0, 1.0) or top_k != 0 or top_p != 1.0):
        raise ValueError("temperature, top_k and top_p only apply to strategy='sample'; set strategy='sample'")


def _device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def prefix_tokens(vocab: Vocab, prefix: str) -> list[str]:
    """The prefix's tokens, or a one-line ValueError when it is empty or holds tokens the vocabulary lacks
    (callers that echo the prefix check it first, so the error never lands after the echo)."""
    tokens = vocab.tokenize(prefix)
    if not tokens:
        raise ValueError("the prefix is empty (after normalisation); give at least one token to start from")
    unknown = vocab.unknown(tokens)
    if unknown:
        shown = ", ".join(repr(t) for t in unknown[:10]) + (" …" if len(unknown) > 10 else "")
        raise ValueError(
            f"the prefix holds {len(unknown)} token(s) the model's vocabulary does not know: {shown}; "
            "remove or replace them"
        )
    return tokens


def generate(
    model: nn.Module,
    vocab: Vocab,
    prefix: str,
    num_tokens: int,
    *,
    strategy: str = "greedy",
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: torch.Generator | None = None,
    on_token: Callable[[str], Any] | None = None,
) -> str:
    """``prefix`` followed by ``num_tokens`` generated tokens, as text.

    The prefix is tokenised like the training text (``vocab.tokenize``: same level and normalisation) and
    must be non-empty and hold only known tokens. ``temperature=0`` with ``strategy="sample"`` is greedy.
    ``<unk>`` is never produced (it stands for "some token the vocabulary dropped", which no reader wants; a
    character model never even sees it in training, yet sampling can still draw it).
    ``generator`` (a CPU ``torch.Generator``) makes sampling reproducible; ``on_token`` receives each new
    piece of text as it is produced (a character, or " word" / "," at word level), for streaming: the pieces
    concatenated equal the returned text after the prefix.
    """
    _check(strategy, temperature, top_k, top_p, num_tokens)
    tokens = prefix_tokens(vocab, prefix)
    greedy = strategy == "greedy" or temperature == 0
    device = _device(model)
    ids = vocab.encode(tokens)
    was_training = model.training
    model.eval()

    def step(token: Tensor, state: Any) -> tuple[Tensor, Any]:
        """The next token's logits as (1, 1, V): through LanguageModel.step (its stepper) where there is one."""
        if isinstance(model, LanguageModel):
            logits, state = model.step(token, state)
            return logits[:, None], state
        return model(token[:, None], state)

    try:
        with torch.no_grad():
            # warm-up: one pass over the prefix leaves the state after its last token (d2l's predict, batched)
            logits, state = model(torch.tensor([ids], device=device), None)  # (1, T, V)
            for i in range(num_tokens):
                last = logits[0, -1].detach().to("cpu", torch.float64)  # (V,) sampling on CPU: seedable anywhere
                last[vocab.unk] = -math.inf
                if greedy:
                    nxt = int(torch.argmax(last))
                else:
                    probs = torch.softmax(filter_logits(last, temperature=temperature, top_k=top_k, top_p=top_p), -1)
                    nxt = int(torch.multinomial(probs, 1, generator=generator))
                ids.append(nxt)
                if on_token is not None:
                    token = vocab.idx_to_token[nxt]
                    on_token(vocab.separator(vocab.idx_to_token[ids[-2]], token) + token)
                if i + 1 < num_tokens:  # the last token's successor is never needed
                    logits, state = step(torch.tensor([nxt], device=device), state)  # (1, 1, V)
    finally:
        model.train(was_training)
    return vocab.decode(ids)
