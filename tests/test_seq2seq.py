import pytest
import torch

from rnnkit.tasks.seq2seq import AdditiveAttention, Seq2Seq, masked_cross_entropy


def make_model(cell="gru", attention=True, seed=0, **kw):
    torch.manual_seed(seed)
    kw = {"embed_size": 8, "hidden_size": 12, "num_layers": 2, "dropout": 0.0, **kw}
    return Seq2Seq(11, 13, cell=cell, attention=attention, **kw).double().eval()


def random_batch(B=5, S=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    src_len = torch.randint(1, S + 1, (B,), generator=g)
    src_len[0] = S
    src = torch.randint(4, 11, (B, S), generator=g)
    src[torch.arange(S)[None, :] >= src_len[:, None]] = 0
    return src, src_len


def test_attention_weights_sum_to_one_and_ignore_padding():
    torch.manual_seed(0)
    attn = AdditiveAttention(4, 6, 5).double()
    keys = torch.randn(3, 7, 6, dtype=torch.float64)
    mask = torch.arange(7)[None, :] < torch.tensor([7, 2, 4])[:, None]
    context, w = attn(torch.randn(3, 4, dtype=torch.float64), attn.project_keys(keys), keys, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(3, dtype=torch.float64))
    assert (w[~mask] == 0).all() and (w[mask] > 0).all()
    torch.testing.assert_close(context, torch.einsum("bs,bsv->bv", w, keys))
    # Bahdanau's score written out for one (query, key): v^T tanh(W_q q + W_k k)
    q, k = torch.randn(4, dtype=torch.float64), keys[0, 3]
    score = attn.v.weight @ torch.tanh(attn.W_q.weight @ q + attn.W_k.weight @ k)
    _, w1 = attn(q[None], attn.project_keys(keys[:1]), keys[:1], torch.ones(1, 7, dtype=torch.bool))
    all_scores = (attn.v(torch.tanh(attn.W_q(q)[None] + attn.W_k(keys[0])))).squeeze(-1)
    torch.testing.assert_close(w1[0, 3], torch.exp(score[0]) / torch.exp(all_scores).sum())


@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("attention", [False, True])
def test_beam_one_equals_greedy(cell, attention):
    model = make_model(cell, attention)
    src, src_len = random_batch(B=6)
    greedy = model.greedy(src, src_len, max_len=9)
    assert greedy == model.beam_search(src, src_len, beam_size=1, max_len=9)
    assert any(len(s) > 0 for s in greedy)
    assert not {t for s in greedy for t in s} & {0, 1, 3}  # never <pad>, <bos> or <unk>


@pytest.mark.parametrize("attention", [False, True])
def test_padding_does_not_change_the_translation(attention):
    # the encoder reads lengths= and attention masks padding: a sentence alone or padded in a batch
    # decodes to the same tokens, and its teacher-forced logits agree
    model = make_model("lstm", attention)
    src, src_len = random_batch(B=4, S=7)
    tgt_in = torch.randint(4, 13, (4, 5))
    batch_logits = model(src, src_len, tgt_in)
    for i in range(4):
        L = int(src_len[i])
        alone = model(src[i : i + 1, :L], src_len[i : i + 1], tgt_in[i : i + 1])
        torch.testing.assert_close(alone[0], batch_logits[i])
        assert model.greedy(src[i : i + 1, :L], src_len[i : i + 1]) == [model.greedy(src, src_len)[i]]


def test_teacher_forcing_matches_step_by_step_decoding():
    # forward() without attention runs the decoder in one call; it must equal decode_step repeated
    model = make_model("gru", attention=False)
    src, src_len = random_batch()
    tgt_in = torch.randint(4, 13, (5, 4))
    memory, state = model.encode(src, src_len)
    steps = []
    for t in range(4):
        logits, state, _ = model.decode_step(tgt_in[:, t], state, memory)
        steps.append(logits)
    torch.testing.assert_close(model(src, src_len, tgt_in), torch.stack(steps, 1))


@pytest.mark.parametrize("alpha", [0.0, 0.75])
def test_wide_beam_is_exhaustive_search(alpha):
    # with beam_size >= V^2 and max_len 2 nothing is pruned: beam search must return the best of every
    # possible output (finished with <eos> after 0 or 1 tokens, or cut at 2 tokens) under its length-normalised score
    model = make_model("gru", attention=True, seed=3)
    src, src_len = random_batch(B=3, seed=5)
    V = model.out.out_features
    for i in range(3):
        s, n = src[i : i + 1, : int(src_len[i])], src_len[i : i + 1]
        memory, state0 = model.encode(s, n)

        @torch.no_grad()
        def step(tok, state, memory=memory):
            logits, state, _ = model.decode_step(torch.tensor([tok]), state, memory)
            return torch.log_softmax(model._allowed(logits[0]), -1), state

        lp1, state1 = step(model.bos, state0)
        best = (float(lp1[model.eos]) / 1**alpha, [])
        allowed = [t for t in range(V) if t not in model.banned]  # never <pad> <bos> <unk>
        for a in allowed:
            if a == model.eos:
                continue
            lp2, _ = step(a, state1)
            for b in allowed:
                seq = [a] if b == model.eos else [a, b]  # both have length 2 (counting <eos>)
                best = max(best, (float(lp1[a] + lp2[b]) / 2**alpha, seq), key=lambda x: x[0])
        assert model.beam_search(s, n, beam_size=V * V, max_len=2, length_penalty=alpha) == [best[1]]


def test_masked_cross_entropy_ignores_padding():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, dtype=torch.float64)
    target = torch.tensor([[3, 4, 2, 0], [5, 2, 0, 0]])
    loss, n = masked_cross_entropy(logits, target, pad=0)
    assert n == 5
    real = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    expected = -sum(torch.log_softmax(logits[b, t], -1)[target[b, t]] for b, t in real) / 5
    torch.testing.assert_close(loss, expected)
    # more padding changes nothing
    wider = torch.cat([logits, torch.randn(2, 3, 6, dtype=torch.float64)], 1)
    loss2, _ = masked_cross_entropy(wider, torch.cat([target, torch.zeros(2, 3, dtype=torch.long)], 1), pad=0)
    torch.testing.assert_close(loss2, loss)
    with pytest.raises(ValueError, match="padding"):
        masked_cross_entropy(logits, torch.zeros(2, 4, dtype=torch.long), pad=0)


def test_gradcheck_through_attention_decoder():
    model = make_model("gru", attention=True, embed_size=3, hidden_size=4, num_layers=1)
    src, src_len = random_batch(B=2, S=3)
    tgt_in = torch.randint(4, 13, (2, 3))
    w = model.attention.W_q.weight
    params = dict(model.named_parameters())

    def loss_of(wq):
        out = torch.func.functional_call(model, {**params, "attention.W_q.weight": wq}, (src, src_len, tgt_in))
        return out.sum()

    assert torch.autograd.gradcheck(loss_of, (w.detach().clone().requires_grad_(),))


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="cell"):
        Seq2Seq(10, 10, cell="rnn")
    with pytest.raises(ValueError, match="<pad>"):
        Seq2Seq(3, 10)
    with pytest.raises(ValueError, match="beam_size"):
        make_model().beam_search(*random_batch(), beam_size=0)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_decoding_through_the_stepper_equals_the_layer(cell):
    """Greedy and beam decoding step the decoder with its stepper; forcing the layer path changes nothing."""
    torch.manual_seed(0)
    model = Seq2Seq(12, 11, embed_size=8, hidden_size=8, num_layers=2, cell=cell, dropout=0.0).double().eval()
    src = torch.randint(4, 12, (3, 5))
    src_len = torch.tensor([5, 3, 4])
    fast = model.greedy(src, src_len), model.beam_search(src, src_len, beam_size=3)
    assert model.__dict__["_stepper_cache"] is not None
    model.__dict__["_stepper_cache"] = None  # None = no stepper: the decoder layer runs each step
    assert (model.greedy(src, src_len), model.beam_search(src, src_len, beam_size=3)) == fast
