"""Ensembles: the log of the members' mean probability, in greedy, beam and sampling, and in eval.py/translate.py."""

from __future__ import annotations

import copy
import itertools
import json

import pytest
import torch
from conftest import read_metrics, run_cli, run_dirs, translate
from test_decoding import HostSyncs

from seq2seq.build import load_ensemble, restore_ensemble, restore_module
from seq2seq.decoding import BeamSearch, Ensemble, GreedySearch, SampleSearch
from seq2seq.errors import CheckpointError
from seq2seq.modules import Seq2Seq

PAD, UNK, SOS, EOS = 0, 1, 2, 3
SRC_VOCAB = 13
SEARCHES = {
    "greedy": lambda: GreedySearch(max_length=12),
    "beam": lambda: BeamSearch(beam_size=4, nbest=2, length_penalty=0.6, max_length=12),
    "sample": lambda: SampleSearch(temperature=1.3, top_p=0.95, max_length=12),
}


def model(seed: int, tgt_vocab: int = 11, **kwargs) -> Seq2Seq:
    torch.manual_seed(seed)
    options = dict(cell="gru", embedding_dim=8, hidden_size=16, bidirectional=True) | kwargs
    return Seq2Seq(SRC_VOCAB, tgt_vocab, **options).eval()


def different_models(tgt_vocab: int = 11) -> list[Seq2Seq]:
    """Three members that share only the vocabularies: other cells, depths, sizes and attention."""
    return [
        model(0, tgt_vocab, attention={"kind": "bahdanau"}),
        model(1, tgt_vocab, cell="lstm", num_layers=2, hidden_size=12, attention={"kind": "luong", "score": "general"}),
        model(2, tgt_vocab, cell="rnn", bidirectional=False),
    ]


def sources(batch: int = 16, max_len: int = 7, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=gen)
    src = torch.randint(4, SRC_VOCAB, (batch, max_len), generator=gen)
    src[torch.arange(max_len)[None, :] >= lengths[:, None]] = PAD
    return src, lengths


def strip(row: torch.Tensor) -> list[int]:
    """Token ids up to and including <eos>."""
    row = row.tolist()
    return row[: row.index(EOS) + 1] if EOS in row else row


def decode(search_name: str, decoder, src, lengths, seed: int = 5):
    torch.manual_seed(seed)  # the same draws for sampling
    search = SEARCHES[search_name]()
    if isinstance(search, BeamSearch):
        return search.search(decoder, src, lengths, SOS, EOS, PAD)  # (B, nbest, L)
    return search(decoder, src, lengths, SOS, EOS, PAD)


def mean_probability_by_hand(members, src, length, candidates) -> torch.Tensor:
    """Per candidate, the sum over its steps of log(1/n Σ_i p_i(token)), by teacher forcing every member on its own
    (float64): (C,)."""
    longest = max(map(len, candidates))
    tgt_out = torch.tensor([[*c, *[PAD] * (longest - len(c))] for c in candidates])  # (C, T)
    tgt_in = torch.cat([torch.full((len(candidates), 1), SOS), tgt_out[:, :-1]], dim=1)
    batch_src, batch_lengths = src[None, :length].expand(len(candidates), -1), torch.full((len(candidates),), length)
    with torch.no_grad():
        probs = [m(batch_src, batch_lengths, tgt_in).double().softmax(-1) for m in members]  # each (C, T, V)
    log_mean = (sum(probs) / len(probs)).log()
    per_token = log_mean.gather(2, tgt_out[:, :, None]).squeeze(2)  # (C, T)
    steps = torch.arange(longest)[None, :] < torch.tensor([len(c) for c in candidates])[:, None]
    return per_token.masked_fill(~steps, 0.0).sum(1)


# --- one member, identical members ---------------------------------------------------------------------------------


@pytest.mark.parametrize("search", SEARCHES)
@pytest.mark.parametrize("attention", [None, {"kind": "bahdanau"}])
def test_ensemble_of_one_equals_the_model(search, attention):
    single = model(0, attention=attention)
    src, lengths = sources()
    alone, ensembled = (decode(search, m, src, lengths) for m in (single, Ensemble([single])))
    assert torch.equal(alone.tokens, ensembled.tokens)
    torch.testing.assert_close(alone.scores, ensembled.scores, rtol=1e-5, atol=1e-5)
    assert (alone.attention is None) == (attention is None) == (ensembled.attention is None)
    if attention:
        torch.testing.assert_close(alone.attention, ensembled.attention)


@pytest.mark.parametrize("search", SEARCHES)
def test_ensemble_of_two_identical_models_equals_one(search):
    single = model(0, attention={"kind": "luong"}, cell="lstm")
    src, lengths = sources()
    alone = decode(search, single, src, lengths)
    twice = decode(search, Ensemble([single, copy.deepcopy(single)]), src, lengths)
    assert torch.equal(alone.tokens, twice.tokens)
    torch.testing.assert_close(alone.scores, twice.scores, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(alone.attention, twice.attention)


# --- different members ---------------------------------------------------------------------------------------------


def test_greedy_follows_the_mean_probability_and_scores_its_log():
    members = different_models()
    src, lengths = sources()
    found = GreedySearch(max_length=12)(Ensemble(members), src, lengths, SOS, EOS, PAD)
    differs_from_a_member = False
    for i in range(src.size(0)):
        tokens = strip(found.tokens[i])
        # each step's token is the argmax of the hand-computed mean probability given the tokens before it
        for t in range(len(tokens) - (tokens[-1] != EOS or len(tokens) == 12)):  # not a step forced by the limit
            prefix = tokens[:t]
            scores = mean_probability_by_hand(members, src[i], lengths[i], [(*prefix, v) for v in range(11)])
            assert int(scores.argmax()) == tokens[t]
        expected = mean_probability_by_hand(members, src[i], lengths[i], [tokens])
        assert found.scores[i].item() == pytest.approx(expected.item(), abs=1e-4)
    for member in members:
        alone = GreedySearch(max_length=12)(member, src, lengths, SOS, EOS, PAD)
        differs_from_a_member |= not torch.equal(alone.tokens[:, : found.tokens.size(1)], found.tokens)
    assert differs_from_a_member  # the members disagree, so the test says something


def test_ensemble_attention_is_the_members_mean_and_none_when_one_has_none():
    members = different_models()
    src, lengths = sources(batch=4)
    attending = Ensemble(members[:2])
    encoded = attending.encode(src, lengths)
    tokens = torch.full((4,), SOS)
    _, _, weights = attending.decode_step(tokens, encoded.state, encoded)  # (B, S)
    singles = [m.decode_step(tokens, e.state, e)[2] for m, e in zip(members[:2], encoded.members)]
    torch.testing.assert_close(weights, (singles[0] + singles[1]) / 2)
    torch.testing.assert_close(weights.sum(-1), torch.ones(4))
    assert attending.has_attention and not Ensemble(members).has_attention
    found = BeamSearch(beam_size=3, max_length=8)(Ensemble(members), src, lengths, SOS, EOS, PAD)
    assert found.attention is None


def test_ensemble_beam_finds_the_best_hypothesis_of_the_mean_probability():
    """An exhaustive beam over a 6-token vocabulary: the ensemble's beam is the best hypothesis of its own score,
    so it beats (or equals) each member's own best on that score."""
    vocab, max_length, min_length = 6, 4, 3  # at least 3 tokens: random models would all pick <eos> alone
    members = different_models(tgt_vocab=vocab)
    src, lengths = sources(batch=5, seed=3)
    beam = BeamSearch(beam_size=vocab**max_length, max_length=max_length, min_length=min_length)
    found = beam(Ensemble(members), src, lengths, SOS, EOS, PAD)
    member_bests = [beam(m, src, lengths, SOS, EOS, PAD) for m in members]
    candidates = [
        (*body, EOS)
        for n in range(min_length, max_length + 1)
        for body in itertools.product([t for t in range(vocab) if t != EOS], repeat=n - 1)
    ]
    beats_a_member = False
    for i in range(src.size(0)):
        scores = mean_probability_by_hand(members, src[i], lengths[i], candidates)
        assert strip(found.tokens[i]) == list(candidates[int(scores.argmax())])
        assert found.scores[i].item() == pytest.approx(scores.max().item(), abs=1e-4)
        for best in member_bests:
            theirs = mean_probability_by_hand(members, src[i], lengths[i], [strip(best.tokens[i])]).item()
            assert found.scores[i].item() >= theirs - 1e-5
            beats_a_member |= found.scores[i].item() > theirs + 1e-3
    assert beats_a_member


def test_top_k_one_sampling_of_an_ensemble_is_its_greedy():
    ensemble = Ensemble(different_models())
    src, lengths = sources()
    greedy = GreedySearch(max_length=10)(ensemble, src, lengths, SOS, EOS, PAD)
    top1 = SampleSearch(top_k=1, max_length=10)(ensemble, src, lengths, SOS, EOS, PAD)
    assert torch.equal(greedy.tokens, top1.tokens)
    torch.testing.assert_close(greedy.scores, top1.scores)


def test_teacher_forced_output_is_the_log_of_the_mean_probability():
    members = different_models()
    src, lengths = sources(batch=4)
    tgt_in = torch.randint(4, 11, (4, 6))
    tgt_in[:, 0] = SOS
    with torch.no_grad():
        out = Ensemble(members)(src, lengths, tgt_in)  # (B, T, V)
        by_hand = (sum(m(src, lengths, tgt_in).double().softmax(-1) for m in members) / 3).log()
    torch.testing.assert_close(out.double(), by_hand, rtol=1e-5, atol=1e-5)
    # normalized, so cross-entropy (which log-softmaxes it again) is the loss of the mean distribution
    torch.testing.assert_close(out.log_softmax(-1), out, rtol=0, atol=1e-5)


@pytest.mark.parametrize("search", ["greedy", "beam", "sample"])
def test_an_ensemble_waits_for_the_device_no_more_than_its_members(search):
    """Averaging adds no host sync: beyond a single model's, only each extra member's encoder reads its lengths."""
    members = different_models()
    src, lengths = sources(batch=8, seed=5)
    counts = []
    for decoder in (members[0], Ensemble(members)):
        searcher = SEARCHES[search]()
        searcher.check_every = 8  # an accelerator's cadence
        torch.manual_seed(0)
        with HostSyncs() as syncs:
            searcher(decoder, src, lengths, SOS, EOS, PAD)
        counts.append(syncs.count)
    assert counts[1] <= counts[0] + len(members) - 1


# --- checkpoints and the command line ------------------------------------------------------------------------------


def perturbed_copy(source, target, scale: float = 0.05, seed: int = 0) -> None:
    """A copy of the checkpoint with noise on its weights: another model with the same vocabularies."""
    checkpoint = torch.load(source, weights_only=True)
    gen = torch.Generator().manual_seed(seed)
    checkpoint["state_dict"] = {
        k: v + scale * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in checkpoint["state_dict"].items()
    }
    torch.save(checkpoint, target)


def with_other_tokenizer(source, target, side: str) -> None:
    """A copy of the checkpoint whose ``side`` tokenizer has the same tokens under other ids (two of them swapped)."""
    checkpoint = torch.load(source, weights_only=True)
    tokenizer = json.loads(checkpoint["seq2seq"]["tokenizers"][side])
    vocab = tokenizer["model"]["vocab"]
    first, second = list(vocab)[-2:]
    vocab[first], vocab[second] = vocab[second], vocab[first]
    checkpoint["seq2seq"]["tokenizers"][side] = json.dumps(tokenizer)
    torch.save(checkpoint, target)


def test_restored_ensemble_is_the_mean_of_its_checkpoints(reverse_run, tmp_path):
    best = reverse_run / "checkpoints" / "best.ckpt"
    perturbed_copy(best, tmp_path / "other.ckpt")
    members = load_ensemble([best, tmp_path / "other.ckpt"])
    module = restore_ensemble(members)
    assert isinstance(module.model, Ensemble) and len(module.model.members) == 2
    singles = [restore_module(checkpoint, trained).eval() for checkpoint, trained in members]
    src, lengths = torch.tensor([[5, 6, 7, 0], [8, 9, 10, 11]]), torch.tensor([3, 4])
    tgt_in = torch.tensor([[SOS, 7, 6, 5, EOS], [SOS, 11, 10, 9, 8]])
    with torch.no_grad():
        by_hand = (sum(s.model(src, lengths, tgt_in).softmax(-1) for s in singles) / 2).log()
        torch.testing.assert_close(module.eval().model(src, lengths, tgt_in), by_hand, rtol=1e-5, atol=1e-5)
    # a single checkpoint is the model itself, as before ensembles
    assert isinstance(restore_ensemble(members[:1]).model, Seq2Seq)


@pytest.mark.parametrize("side", ["source", "target"])
def test_other_vocabularies_are_refused_naming_both_files(reverse_run, tmp_path, side):
    best = reverse_run / "checkpoints" / "best.ckpt"
    other = tmp_path / "other.ckpt"
    with_other_tokenizer(best, other, side)
    with pytest.raises(CheckpointError, match=f"{other} and {best} have different {side} tokenizers"):
        load_ensemble([best, other])


def test_eval_of_two_identical_checkpoints_equals_the_checkpoint_and_records_both(reverse_run, tmp_path):
    best = reverse_run / "checkpoints" / "best.ckpt"
    run_cli("eval", f"ckpt_path=[{best},{best}]", "data.split=val", "trainer=cpu", log_dir=tmp_path)
    (eval_dir,) = run_dirs(tmp_path, "eval")
    evaluated, trained = read_metrics(eval_dir), read_metrics(reverse_run)  # the single model's val metrics
    for name in ("loss", "ppl", "acc", "bleu", "chrf", "exact_match", "num_sentences"):
        assert evaluated[f"val/{name}"] == pytest.approx(trained[f"val/{name}"], rel=1e-5, abs=1e-6), name
    assert evaluated["checkpoints"] == [str(best.resolve())] * 2 and "checkpoint" not in evaluated


def test_eval_with_another_vocabulary_is_one_error_line(reverse_run, tmp_path):
    best = reverse_run / "checkpoints" / "best.ckpt"
    other = tmp_path / "other.ckpt"
    with_other_tokenizer(best, other, "target")
    result = run_cli("eval", f"ckpt_path=[{best},{other}]", "trainer=cpu", log_dir=tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {other} and {best} have different target tokenizers: an ensemble needs checkpoints with the same "
        "vocabularies (runs on the same data and tokenizer settings)"
    ]
    assert not run_dirs(tmp_path, "eval") or not (run_dirs(tmp_path, "eval")[0] / "metrics.json").exists()


def test_translate_with_two_checkpoints(reverse_run, tmp_path):
    best = reverse_run / "checkpoints" / "best.ckpt"
    perturbed_copy(best, tmp_path / "other.ckpt", scale=0.01)
    ensemble = f"[{best},{tmp_path / 'other.ckpt'}]"
    result = translate(ensemble, "t1 t2 t3\n\nt5 t6 t7 t8\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:-1] == ["t3 t2 t1", "", "t8 t7 t6 t5"]
    nbest = translate(ensemble, "t1 t2 t3\n", "decoding=beam", "decoding.beam_size=4", "decoding.nbest=2")
    assert nbest.returncode == 0, nbest.stderr
    lines = [line.split("\t") for line in nbest.stdout.splitlines()]
    assert [text for _, text in lines][0] == "t3 t2 t1" and float(lines[0][0]) >= float(lines[1][0])


def test_empty_checkpoint_list_is_one_error_line(tmp_path):
    result = translate("[]", "x\n")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: ckpt_path=[]: pass one checkpoint, ckpt_path=a.ckpt, or an ensemble, ckpt_path=[a.ckpt,b.ckpt]"
    ]
