"""Greedy, beam and sampling: exactness against each other, exhaustive search and batch composition."""

import itertools

import pytest
import torch

from seq2seq.decoding import BeamSearch, GreedySearch, SampleSearch
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
