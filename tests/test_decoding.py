"""Greedy, beam and sampling: exactness against each other, exhaustive search and batch composition."""

import itertools

import pytest
import torch
from torch.overrides import TorchFunctionMode

from seq2seq.decoding import BeamSearch, GreedySearch, SampleSearch
from seq2seq.decoding.hypotheses import CHECK_EVERY, check_interval
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq

PAD, UNK, SOS, EOS = 0, 1, 2, 3


def random_model(tgt_vocab=11, seed=0, cell="gru"):
    torch.manual_seed(seed)
    return Seq2Seq(13, tgt_vocab, cell=cell, embedding_dim=8, hidden_size=16, bidirectional=True).eval()


def random_sources(batch=32, max_len=7, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=gen)
    src = torch.randint(4, 13, (batch, max_len), generator=gen)
    src[torch.arange(max_len)[None, :] >= lengths[:, None]] = PAD
    return src, lengths


@pytest.fixture(scope="module")
def copy_model():
    """A model trained for a few seconds to copy its input: decoders then face a peaked, real distribution."""
    torch.manual_seed(0)
    model = Seq2Seq(13, 13, embedding_dim=16, hidden_size=32, bidirectional=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(150):
        src = torch.randint(4, 13, (32, 5))
        tgt_in = torch.cat([torch.full((32, 1), SOS), src], dim=1)
        tgt_out = torch.cat([src, torch.full((32, 1), EOS)], dim=1)
        loss = torch.nn.functional.cross_entropy(
            model(src, torch.full((32,), 5), tgt_in).flatten(0, 1), tgt_out.flatten()
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def sequence_log_prob(model, src, length, tokens):
    """Log-probability of ``tokens`` (ending in <eos>) for one source, by teacher forcing."""
    tgt_in = torch.tensor([[SOS, *tokens[:-1]]])
    log_probs = model(src[None, :length], torch.tensor([length]), tgt_in).log_softmax(-1)[0]
    return log_probs.gather(1, torch.tensor(tokens)[:, None]).sum().item()


def strip(row):
    """Token ids up to and including <eos>."""
    row = row.tolist()
    return row[: row.index(EOS) + 1] if EOS in row else row


def test_beam_of_one_is_greedy():
    model = random_model()
    src, lengths = random_sources()
    greedy = GreedySearch(max_length=12)(model, src, lengths, SOS, EOS, PAD)
    beam = BeamSearch(beam_size=1, max_length=12)(model, src, lengths, SOS, EOS, PAD)
    assert [strip(r) for r in greedy.tokens] == [strip(r) for r in beam.tokens]
    torch.testing.assert_close(greedy.scores, beam.scores)


def test_beam_scores_at_least_greedy_per_sentence(copy_model):
    src, lengths = random_sources(batch=64, max_len=6, seed=1)
    src = src.clamp(min=4)  # noisy inputs of other lengths: the model is unsure, the search matters
    greedy = GreedySearch(max_length=12)(copy_model, src, lengths, SOS, EOS, PAD)
    beam = BeamSearch(beam_size=5, length_penalty=0.0, max_length=12)(copy_model, src, lengths, SOS, EOS, PAD)
    assert (beam.scores >= greedy.scores - 1e-5).all()
    assert (beam.scores > greedy.scores + 1e-3).any()  # and it does find better ones
    # the reported score is the model's log-probability of the returned hypothesis
    for i in range(8):
        tokens = strip(beam.tokens[i])
        assert beam.scores[i].item() == pytest.approx(
            sequence_log_prob(copy_model, src[i], lengths[i], tokens), abs=1e-4
        )


@pytest.mark.parametrize("min_length", [0, 3])
def test_large_beam_finds_the_exhaustive_optimum(min_length):
    vocab, max_length = 6, 4
    model = random_model(tgt_vocab=vocab, seed=3)
    src, lengths = random_sources(batch=6, seed=3)
    beam = BeamSearch(beam_size=vocab**max_length, max_length=max_length, min_length=min_length)
    found = beam(model, src, lengths, SOS, EOS, PAD)
    for i in range(6):
        candidates = [
            (*body, EOS)
            for n in range(max(min_length, 1), max_length + 1)
            for body in itertools.product([t for t in range(vocab) if t != EOS], repeat=n - 1)
        ]
        scores = [sequence_log_prob(model, src[i], lengths[i], list(c)) for c in candidates]
        best = max(range(len(candidates)), key=scores.__getitem__)
        assert strip(found.tokens[i]) == list(candidates[best])
        assert found.scores[i].item() == pytest.approx(scores[best], abs=1e-4)


@pytest.mark.parametrize(
    "search", [GreedySearch(max_length=10), BeamSearch(beam_size=4, max_length=10, length_penalty=0.6, nbest=2)]
)
def test_results_do_not_depend_on_batch_composition(search):
    model = random_model(cell="lstm")
    src, lengths = random_sources(batch=32)
    batched = search(model, src, lengths, SOS, EOS, PAD)
    for i in range(0, 32, 5):
        alone = search(model, src[i : i + 1, : lengths[i]], lengths[i : i + 1], SOS, EOS, PAD)
        assert strip(alone.tokens[0]) == strip(batched.tokens[i])
        torch.testing.assert_close(alone.scores[0], batched.scores[i], rtol=1e-5, atol=1e-5)


def test_top_k_one_sampling_is_greedy_and_seeds_reproduce():
    model = random_model()
    src, lengths = random_sources()
    greedy = GreedySearch(max_length=10)(model, src, lengths, SOS, EOS, PAD)
    top1 = SampleSearch(top_k=1, max_length=10)(model, src, lengths, SOS, EOS, PAD)
    assert torch.equal(greedy.tokens, top1.tokens)
    sampler = SampleSearch(temperature=1.5, top_p=0.9, max_length=10)
    torch.manual_seed(7)
    first = sampler(model, src, lengths, SOS, EOS, PAD)
    torch.manual_seed(7)
    second = sampler(model, src, lengths, SOS, EOS, PAD)
    torch.manual_seed(8)
    third = sampler(model, src, lengths, SOS, EOS, PAD)
    assert torch.equal(first.tokens, second.tokens)
    assert not torch.equal(first.tokens, third.tokens)
    assert not torch.equal(first.tokens, greedy.tokens)


def test_lengths_are_respected_and_nbest_is_distinct_and_sorted():
    model = random_model()
    src, lengths = random_sources()
    search = BeamSearch(beam_size=5, nbest=3, max_length=6, min_length=3)
    nbest = search.search(model, src, lengths, SOS, EOS, PAD)
    assert nbest.tokens.shape[:2] == (32, 3) and nbest.tokens.shape[2] <= 6
    assert (nbest.scores[:, :-1] >= nbest.scores[:, 1:]).all()
    for sentence in nbest.tokens:
        hyps = [tuple(strip(h)) for h in sentence]
        assert len(set(hyps)) == 3
        assert all(3 <= len(h) <= 6 and h[-1] == EOS and EOS not in h[:-1] for h in hyps)
    ratio = GreedySearch(max_length=50, max_length_ratio=1.0)(model, src, lengths, SOS, EOS, PAD)
    produced = (ratio.tokens != PAD).sum(1)
    assert (produced <= lengths + 5).all()


def test_no_repeat_ngram():
    model = random_model()
    src, lengths = random_sources()
    tokens = BeamSearch(beam_size=3, max_length=12, no_repeat_ngram_size=2)(model, src, lengths, SOS, EOS, PAD)
    for row in tokens.tokens:
        hyp = strip(row)
        bigrams = list(zip(hyp, hyp[1:]))
        assert len(bigrams) == len(set(bigrams))


@pytest.mark.parametrize(
    "search",
    [
        GreedySearch(max_length=12, min_length=4, no_repeat_ngram_size=2),
        SampleSearch(temperature=0.5, max_length=12, min_length=4, no_repeat_ngram_size=2),
        BeamSearch(beam_size=3, max_length=12, min_length=4, no_repeat_ngram_size=2),
    ],
    ids=["greedy", "sample", "beam"],
)
def test_every_search_applies_the_length_and_ngram_constraints(search):
    model = random_model()  # unconstrained, its greedy outputs end early and repeat (asserted below)
    src, lengths = random_sources()
    torch.manual_seed(0)
    found = search(model, src, lengths, SOS, EOS, PAD)
    for row in found.tokens:
        hyp = strip(row)
        bigrams = list(zip(hyp, hyp[1:]))
        assert len(bigrams) == len(set(bigrams))
        assert 4 <= len(hyp) <= 12 and hyp[-1] == EOS
    free = [strip(row) for row in GreedySearch(max_length=12)(model, src, lengths, SOS, EOS, PAD).tokens]
    assert any(len(hyp) < 4 for hyp in free)
    assert any(len(set(zip(hyp, hyp[1:]))) < len(hyp) - 1 for hyp in free)


@pytest.mark.parametrize("kind", [GreedySearch, SampleSearch, BeamSearch])
def test_the_length_limit_wins_over_min_length(kind):
    model, (src, lengths) = random_model(), random_sources()
    found = kind(max_length=5, min_length=8)(model, src, lengths, SOS, EOS, PAD)
    assert found.tokens.shape == (32, 5)
    assert (found.tokens[:, -1] == EOS).all() and (found.tokens[:, :-1] != EOS).all()
    assert torch.isfinite(found.scores).all()


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda: BeamSearch(beam_size=0), "beam_size"),
        (lambda: BeamSearch(beam_size=2, nbest=3), "nbest"),
        (lambda: SampleSearch(temperature=0), "temperature"),
        (lambda: SampleSearch(top_p=1.5), "top_p"),
        (lambda: SampleSearch(top_p=0.0), "top_p"),
        (lambda: SampleSearch(top_k=-1), "top_k"),
    ],
)
def test_bad_decoding_parameters(make, message):
    with pytest.raises(ConfigError, match=message):
        make()


# Outputs of the decoders before their refactoring (issues 11 and 12), pinned: tokens up to <eos>, score and, with
# attention, the expected source position summed over the output steps, of every hypothesis, and the shape.
PINNED_SETTINGS = {
    "none": {
        "greedy": ("GreedySearch", dict(max_length=13)),
        "greedy ratio": ("GreedySearch", dict(max_length=20, max_length_ratio=0.5)),
        "beam 1": ("BeamSearch", dict(beam_size=1, max_length=10)),
        "beam 3 nbest 2 penalty": ("BeamSearch", dict(beam_size=3, nbest=2, length_penalty=0.6, max_length=10)),
        "beam 4 min length": ("BeamSearch", dict(beam_size=4, min_length=3, max_length=8)),
        "beam 3 no repeat": ("BeamSearch", dict(beam_size=3, no_repeat_ngram_size=2, max_length=12)),
        "beam 5 nbest 3 ratio": (
            "BeamSearch",
            dict(beam_size=5, nbest=3, length_penalty=1.0, max_length=30, max_length_ratio=1.0),
        ),
        "sample": ("SampleSearch", dict(temperature=1.5, top_p=0.9, max_length=10)),
        "sample top k": ("SampleSearch", dict(top_k=3, max_length=30)),
    },
    "bahdanau": {
        "greedy": ("GreedySearch", dict(max_length=13)),
        "beam 3 nbest 2 penalty": (
            "BeamSearch",
            dict(beam_size=3, nbest=2, length_penalty=0.6, min_length=2, max_length=10),
        ),
        "sample": ("SampleSearch", dict(temperature=1.5, top_p=0.9, max_length=10)),
    },
    "luong": {
        "greedy": ("GreedySearch", dict(max_length=13)),
        "beam 3 nbest 2 penalty": (
            "BeamSearch",
            dict(beam_size=3, nbest=2, length_penalty=0.6, min_length=2, max_length=10),
        ),
        "sample": ("SampleSearch", dict(temperature=0.7, max_length=30)),
    },
}


def pinned_model(attention: str) -> Seq2Seq:
    """A tiny seeded model whose outputs end at varied lengths: weights scaled up (its choices then depend on the
    source) and, but for Luong's, a higher <eos> logit."""
    torch.manual_seed(4)
    model = Seq2Seq(13, 11, embedding_dim=8, hidden_size=16, bidirectional=True, attention={"kind": attention})
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(3.0)
        model.decoder.output.bias[EOS] += 0.0 if attention == "luong" else 1.0
    return model.eval()


def digest(found) -> dict:
    """The shape of the tokens and, per sentence and hypothesis, (tokens up to <eos>, score, attention digest)."""
    tokens, scores, attention = found.tokens, found.scores, found.attention
    if tokens.dim() == 2:  # one hypothesis per sentence
        tokens, scores = tokens[:, None], scores[:, None]
        attention = None if attention is None else attention[:, None]
    hyps = []
    for b in range(tokens.size(0)):
        row = []
        for n in range(tokens.size(1)):
            hyp = [" ".join(map(str, strip(tokens[b, n]))), round(scores[b, n].item(), 5)]
            if attention is not None:
                positions = torch.arange(attention.size(-1), dtype=attention.dtype)
                hyp.append(round((attention[b, n] * positions).sum().item(), 4))
            row.append(tuple(hyp))
        hyps.append(row)
    return {"shape": tuple(tokens.shape), "hyps": hyps}


def decode_pinned(classes: dict, attention: str, name: str, check_every: int | None = None) -> list[dict]:
    """Decode the pinned sources with one setting (and the search's ``check_every`` if given); a sampler decodes
    twice after one seed."""
    kind, kwargs = PINNED_SETTINGS[attention][name]
    search = classes[kind](**kwargs)
    if check_every is not None:
        search.check_every = check_every
    model = pinned_model(attention)
    src, lengths = random_sources(batch=8, seed=5)
    if kind == "BeamSearch":
        return [digest(search.search(model, src, lengths, SOS, EOS, PAD))]
    torch.manual_seed(11)
    return [digest(search(model, src, lengths, SOS, EOS, PAD)) for _ in range(2 if kind == "SampleSearch" else 1)]


# fmt: off
PINNED = {("bahdanau", "beam 3 nbest 2 penalty"): [{"hyps": [[("1 7 9 9 9 9 9 9 9 3", -5.66123, 3.5207),
                                                     ("7 9 9 9 9 9 9 9 9 3", -5.73302, 3.2984)],
                                                    [("1 7 9 9 9 9 9 9 9 3", -5.48306, 17.692),
                                                     ("7 9 9 9 9 9 9 9 9 3", -5.84053, 17.8155)],
                                                    [("1 7 9 9 9 9 9 9 7 3", -4.06917, 6.5676),
                                                     ("1 7 9 9 9 9 9 9 9 3", -5.34638, 6.5676)],
                                                    [("1 7 9 9 9 9 9 9 7 3", -4.52723, 12.7694),
                                                     ("1 7 9 9 9 9 9 9 9 3", -5.65667, 12.7694)],
                                                    [("4 3", -2.00935, 5.7232),
                                                     ("7 9 9 9 9 9 9 9 7 3", -4.48039, 29.5453)],
                                                    [("1 7 9 9 9 9 9 9 6 3", -4.79489, 7.0975),
                                                     ("1 7 9 9 9 9 9 9 9 3", -5.84422, 7.0975)],
                                                    [("4 3", -1.40894, 0.6309), ("1 4 3", -2.05415, 0.9146)],
                                                    [("4 3", -1.19955, 2.9973), ("1 6 4 3", -2.40196, 6.0462)]],
                                           "shape": (8, 2, 10)}],
 ("bahdanau", "greedy"): [{"hyps": [[("1 7 9 9 9 9 9 9 9 9 9 9 3", -10.61859, 4.3766)],
                                    [("1 7 9 9 9 9 9 9 9 9 9 9 3", -10.04431, 23.1951)],
                                    [("1 7 9 9 9 9 9 9 9 9 9 9 3", -9.58588, 8.3493)],
                                    [("4 2 1 7 9 9 9 9 9 9 9 9 3", -11.03961, 16.092)], [("4 3", -2.20406, 36.5244)],
                                    [("1 7 9 9 9 9 9 9 9 9 9 9 3", -10.65916, 9.3999)], [("1 4 3", -2.44115, 4.5878)],
                                    [("1 7 3", -3.07138, 23.2256)]],
                           "shape": (8, 1, 13)}],
 ("bahdanau", "sample"): [{"hyps": [[("7 8 5 3", -9.53562, 3.5968)], [("4 5 1 7 9 9 7 6 4 3", -13.37278, 18.3769)],
                                    [("6 4 2 4 5 1 5 5 8 3", -19.99039, 6.0154)],
                                    [("1 5 1 8 5 4 5 7 6 3", -19.23564, 14.1986)],
                                    [("4 5 1 7 9 9 9 7 3", -11.56216, 28.4308)],
                                    [("8 0 9 5 1 7 9 7 6 3", -21.41531, 6.6843)], [("4 3", -1.54547, 3.5951)],
                                    [("10 8 3", -9.22001, 18.8461)]],
                           "shape": (8, 1, 10)},
                          {"hyps": [[("1 7 9 9 9 6 2 4 3", -9.25338, 3.4399)],
                                    [("1 7 0 7 9 9 9 7 5 3", -14.47144, 17.5631)], [("7 3", -5.17644, 5.9431)],
                                    [("4 3", -2.50465, 13.0805)], [("7 9 9 9 9 9 9 8 3", -8.95498, 29.4935)],
                                    [("4 5 7 5 6 3", -12.43536, 6.1936)], [("4 3", -1.54547, 3.5951)],
                                    [("4 10 4 3", -5.17688, 19.3475)]],
                           "shape": (8, 1, 10)}],
 ("luong", "beam 3 nbest 2 penalty"): [{"hyps": [[("1 1 1 1 1 1 1 1 1 3", -4.37943, 8.7761),
                                                  ("1 1 1 7 1 1 1 1 1 3", -5.1171, 9.2214)],
                                                 [("1 1 1 1 7 1 1 1 1 3", -6.51849, 47.2517),
                                                  ("7 1 1 1 1 1 1 1 1 3", -6.74671, 43.4043)],
                                                 [("1 5 3", -3.93471, 5.9058), ("1 5 5 10 1 5 3", -6.68145, 13.0541)],
                                                 [("10 1 3", -2.90243, 2.5162), ("0 1 1 3", -3.24615, 3.0434)],
                                                 [("1 3", -2.82499, 5.6774),
                                                  ("1 1 7 1 1 1 1 1 1 3", -6.33238, 33.4197)],
                                                 [("7 1 7 1 1 1 1 1 1 3", -6.37475, 7.2654),
                                                  ("1 7 7 1 1 1 1 1 1 3", -6.53737, 6.7298)],
                                                 [("10 3", -2.03172, 0.0907), ("10 1 3", -2.60136, 0.0919)],
                                                 [("7 1 3", -2.82737, 5.0749), ("7 1 1 3", -3.67521, 7.0697)]],
                                        "shape": (8, 2, 10)}],
 ("luong", "greedy"): [{"hyps": [[("1 1 1 1 1 1 1 1 1 1 1 1 3", -9.15513, 11.4731)], [("3", -1.68884, 50.1357)],
                                 [("5 5 5 5 5 5 5 5 5 5 5 5 3", -21.20259, 24.29)],
                                 [("0 1 1 1 1 1 1 1 1 1 1 1 3", -10.59269, 11.7547)], [("3", -1.38183, 27.6535)],
                                 [("7 1 7 1 1 1 1 1 1 1 1 1 3", -14.06151, 9.1487)], [("10 1 3", -3.09146, 7.7999)],
                                 [("3", -1.69123, 13.204)]],
                        "shape": (8, 1, 13)}],
 ("luong", "sample"): [{"hyps": [[("7 10 5 3", -10.72162, 1.6215)], [("3", -1.68884, 79.7217)],
                                 [("6 6 2 8 2 1 5 5 8 8 2 3", -25.97956, 23.0618)],
                                 [("0 1 1 8 4 10 2 0 1 3", -13.49947, 35.7204)], [("3", -1.38183, 40.1699)],
                                 [("8 0 9 5 6 0 7 7 6 1 1 1 1 5 6 1 1 4 3", -36.13654, 13.9082)],
                                 [("10 3", -2.2286, 15.1626)], [("8 8 8 2 1 4 1 3", -16.49502, 19.0532)]],
                        "shape": (8, 1, 19)},
                       {"hyps": [[("4 1 1 1 1 1 1 1 10 1 7 1 1 4 10 1 1 1 1 7 1 1 10 3", -26.5482, 18.5533)],
                                 [("3", -1.68884, 104.4779)],
                                 [("1 5 8 0 4 0 5 2 2 2 5 1 1 5 0 10 1 1 1 8 3", -33.85598, 39.5293)],
                                 [("1 0 10 1 1 1 3", -8.93147, 50.463)], [("1 3", -3.09874, 87.5919)],
                                 [("7 3", -3.50841, 8.008)], [("10 3", -2.2286, 19.5946)],
                                 [("7 1 1 3", -4.68745, 22.0581)]],
                        "shape": (8, 1, 24)}],
 ("none", "beam 1"): [{"hyps": [[("4 8 8 3", -3.95577)], [("1 1 1 1 1 1 1 1 1 3", -11.02165)],
                                [("1 1 1 1 1 1 1 1 1 3", -12.36307)], [("8 3", -2.33939)],
                                [("1 1 1 1 1 1 1 1 1 3", -8.09721)], [("1 1 1 1 1 1 1 1 1 3", -10.80125)],
                                [("8 3", -1.95442)], [("1 1 1 1 1 1 1 1 1 3", -11.49245)]],
                       "shape": (8, 1, 10)}],
 ("none", "beam 3 nbest 2 penalty"): [{"hyps": [[("4 8 3", -2.88844), ("4 8 8 3", -3.10153)],
                                                [("4 8 8 3", -3.2846), ("1 1 1 1 1 1 1 1 1 3", -6.36038)],
                                                [("10 8 8 3", -4.2256), ("6 8 2 3", -4.24351)],
                                                [("8 3", -2.13273), ("8 8 3", -3.41161)],
                                                [("1 1 1 1 1 1 1 1 9 3", -4.65101),
                                                 ("1 1 1 1 1 1 1 1 1 3", -4.67274)],
                                                [("1 1 1 1 1 1 1 1 1 3", -6.23318),
                                                 ("1 1 1 1 1 1 1 1 9 3", -6.28498)],
                                                [("8 3", -1.78176), ("6 8 3", -3.10474)],
                                                [("4 8 3", -3.10228), ("1 1 1 1 1 1 1 1 1 3", -6.63206)]],
                                       "shape": (8, 2, 10)}],
 ("none", "beam 3 no repeat"): [{"hyps": [[("4 8 3", -3.43262)], [("4 8 3", -3.50166)], [("10 8 8 3", -5.38943)],
                                          [("8 3", -2.33939)], [("9 8 3", -3.71478)], [("1 1 6 8 2 3", -6.89365)],
                                          [("8 3", -1.95442)], [("4 8 3", -3.68676)]],
                                 "shape": (8, 1, 7)}],
 ("none", "beam 4 min length"): [{"hyps": [[("4 8 3", -3.43262)], [("4 8 3", -3.50166)], [("9 8 3", -3.79581)],
                                           [("8 8 3", -4.05436)], [("9 8 3", -3.71478)], [("4 8 3", -3.79331)],
                                           [("6 8 3", -3.68968)], [("4 8 3", -3.68676)]],
                                  "shape": (8, 1, 8)}],
 ("none", "beam 5 nbest 3 ratio"): [{"hyps": [[("4 8 3", -2.57447), ("4 8 8 3", -2.63718), ("8 3", -2.7917)],
                                              [("4 8 3", -2.62624), ("4 8 8 3", -2.79284),
                                               ("1 1 1 1 1 1 1 9 8 3", -3.96654)],
                                              [("9 8 3", -2.84686), ("10 8 8 3", -3.59295), ("6 8 2 3", -3.60818)],
                                              [("8 3", -2.0052), ("4 8 3", -2.93623), ("4 8 8 3", -2.9536)],
                                              [("1 1 1 1 1 1 1 1 1 9 8 3", -2.68189),
                                               ("1 1 1 1 1 1 1 1 9 8 3", -2.68551), ("9 8 3", -2.78608)],
                                              [("4 8 3", -2.84498), ("9 8 3", -3.11385), ("1 1 1 1 6 8 3", -3.82396)],
                                              [("8 3", -1.67522), ("3", -2.59638), ("6 8 3", -2.76726)],
                                              [("3", -2.1402), ("4 8 3", -2.76507), ("8 3", -2.80253)]],
                                     "shape": (8, 3, 12)}],
 ("none", "greedy"): [{"hyps": [[("4 8 8 3", -3.95577)], [("1 1 1 1 1 1 1 1 1 1 1 1 3", -13.33049)],
                                [("1 1 1 1 1 1 1 1 1 1 1 1 3", -15.16576)], [("8 3", -2.33939)],
                                [("1 1 1 1 1 1 1 1 1 1 1 1 3", -9.56147)], [("1 1 1 1 1 1 1 1 1 1 1 1 3", -13.46697)],
                                [("8 3", -1.95442)], [("1 1 1 1 1 1 1 1 1 1 1 1 3", -14.71425)]],
                       "shape": (8, 1, 13)}],
 ("none", "greedy ratio"): [{"hyps": [[("4 8 8 3", -3.95577)], [("1 1 1 1 1 1 1 3", -9.51778)],
                                      [("1 1 1 1 1 3", -8.63708)], [("8 3", -2.33939)],
                                      [("1 1 1 1 1 1 1 3", -7.23369)], [("1 1 1 1 1 3", -7.5611)],
                                      [("8 3", -1.95442)], [("1 1 1 1 1 1 3", -8.54016)]],
                             "shape": (8, 1, 8)}],
 ("none", "sample"): [{"hyps": [[("6 10 5 9 8 4 3", -16.71358)], [("4 8 9 3", -7.34319)],
                                [("6 6 2 10 9 1 6 8 8 3", -21.94127)], [("10 5 6 8 4 4 5 6 3", -17.20897)],
                                [("1 9 1 5 0 9 4 7 3", -18.9045)], [("8 1 9 5 6 9 9 7 6 3", -23.37465)],
                                [("6 2 1 5 7 5 3", -14.92964)], [("10 8 8 3", -7.74012)]],
                       "shape": (8, 1, 10)},
                      {"hyps": [[("1 6 8 3", -5.45452)], [("1 8 4 3", -7.70722)], [("2 3", -6.60395)],
                                [("6 3", -4.45126)], [("1 1 1 1 1 9 9 8 3", -6.8013)], [("4 5 7 5 6 3", -12.2163)],
                                [("8 3", -1.95442)], [("9 4 8 6 2 1 1 4 8 3", -17.70917)]],
                       "shape": (8, 1, 10)}],
 ("none", "sample top k"): [{"hyps": [[("4 8 3", -3.43262)], [("4 8 8 3", -4.18925)],
                                      [("6 2 1 8 1 1 6 8 8 3", -14.89761)],
                                      [("6 8 8 8 4 4 2 6 4 4 4 8 8 8 3", -23.39149)],
                                      [("1 9 1 9 9 9 5 10 8 2 3", -17.17171)], [("1 1 9 6 8 3", -7.62302)],
                                      [("6 2 8 3", -4.9243)], [("1 1 1 1 1 4 8 3", -8.63841)]],
                             "shape": (8, 1, 15)},
                            {"hyps": [[("8 1 9 9 4 8 8 8 3", -13.97784)], [("9 8 3", -4.48862)],
                                      [("10 8 2 8 4 4 8 3", -11.07935)], [("6 8 8 8 3", -6.01202)],
                                      [("9 9 8 3", -5.18583)], [("1 1 9 8 3", -6.13527)], [("8 6 3", -4.72331)],
                                      [("1 1 6 8 2 3", -7.66889)]],
                             "shape": (8, 1, 9)}]}
# fmt: on


@pytest.mark.parametrize("check_every", [None, 3, 8])  # None: on a CPU, every step
@pytest.mark.parametrize("attention,name", [(a, n) for a in PINNED_SETTINGS for n in PINNED_SETTINGS[a]])
def test_outputs_are_pinned(attention, name, check_every):
    classes = {"GreedySearch": GreedySearch, "BeamSearch": BeamSearch, "SampleSearch": SampleSearch}
    found = decode_pinned(classes, attention, name, check_every)
    for got, expected in zip(found, PINNED[attention, name], strict=True):
        assert got["shape"] == expected["shape"]
        for got_row, expected_row in zip(got["hyps"], expected["hyps"], strict=True):
            assert [h[0] for h in got_row] == [h[0] for h in expected_row]
            assert [h[1:] for h in got_row] == [pytest.approx(h[1:], abs=1e-4) for h in expected_row]


class HostSyncs(TorchFunctionMode):
    """Counts the tensor operations that make the host wait for the device: reading a value (``int``, ``bool``,
    ``.item()``, ``.tolist()``…) and the operations whose output shape depends on values (``nonzero``, boolean
    masks as indices). On a CPU they cost nothing, but they are the same calls that stall a GPU."""

    READS = {torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__int__}
    READS |= {torch.Tensor.__float__, torch.Tensor.__index__, torch.Tensor.nonzero, torch.nonzero}
    READS |= {torch.Tensor.masked_select, torch.masked_select, torch.unique, torch.Tensor.unique}

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.READS:
            self.count += 1
        elif func in (torch.Tensor.__getitem__, torch.Tensor.__setitem__):
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            self.count += any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index)
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize(
    "search",
    [
        GreedySearch(max_length=40),
        SampleSearch(temperature=0.2, max_length=40),
        BeamSearch(beam_size=3, nbest=2, length_penalty=0.6, max_length=40),
        BeamSearch(beam_size=4, length_penalty=1.0, max_length=40),
    ],
    ids=["greedy", "sample", "beam nbest", "beam"],
)
def test_decoding_waits_for_the_device_once_every_few_steps(search):
    model, (src, lengths) = pinned_model("none"), random_sources(batch=8, seed=5)
    search.check_every = CHECK_EVERY  # an accelerator's cadence (a CPU looks every step: it never waits)
    torch.manual_seed(0)
    with HostSyncs() as syncs:
        found = search(model, src, lengths, SOS, EOS, PAD)
    steps = found.tokens.size(1)
    assert steps >= 24  # long enough for per-step checks to show
    # the encoder's packed RNN reads its batch sizes (a CPU tensor) once, the limits are read once, then one look
    # every 8 steps (a beam's compaction costs nothing more)
    assert syncs.count <= 1 + 1 + -(-steps // CHECK_EVERY)
    search.check_every = 1  # the counter sees the looks: every step has one
    torch.manual_seed(0)
    with HostSyncs() as syncs:
        assert torch.equal(search(model, src, lengths, SOS, EOS, PAD).tokens, found.tokens)
    assert syncs.count >= steps


def test_check_interval_is_every_step_on_cpu_only():
    assert check_interval(torch.device("cpu")) == 1
    assert check_interval(torch.device("cuda")) == CHECK_EVERY == 8
    assert check_interval(torch.device("cpu"), 3) == check_interval(torch.device("cuda", 1), 3) == 3
