"""Tied embeddings (model.tie_embeddings) and pretrained word vectors (model.pretrained_embeddings)."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from torch.nn import functional as F

from seq2seq.build import build_module, restore_module
from seq2seq.config_checks import check_embedding_settings
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, tokenizer_to_str, train_tokenizer, vector_keys
from seq2seq.decoding import BeamSearch, GreedySearch
from seq2seq.errors import ConfigError, DataError
from seq2seq.modules import Seq2Seq
from seq2seq.modules.embeddings import load_pretrained_embeddings, load_vectors

REPO = Path(__file__).resolve().parents[1]
V = 13  # one joint vocabulary for the tied models
E, H = 8, 12

# (attention node, the decoder's readout size F for E=8, H=12, bidirectional encoder → memory 24, decoder 24)
READOUTS = [
    pytest.param(None, 24, id="none"),
    pytest.param({"kind": "bahdanau"}, 24 + 24 + E, id="bahdanau"),
    pytest.param({"kind": "luong", "score": "general", "input_feeding": True}, 24, id="luong"),
]


def model(tie: str = "none", attention=None, seed: int = 0, **kwargs) -> Seq2Seq:
    torch.manual_seed(seed)
    settings = {"embedding_dim": E, "hidden_size": H, "bidirectional": True, "attention": attention}
    return Seq2Seq(V, V, tie_embeddings=tie, joint_vocab=True, **{**settings, **kwargs})


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())  # shared parameters counted once


def batch(seed: int = 0, size: int = 6, length: int = 5):
    generator = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V, (size, length), generator=generator)
    lengths = torch.randint(1, length + 1, (size,), generator=generator)
    lengths[0] = length
    src[torch.arange(length)[None, :] >= lengths[:, None]] = PAD_ID
    tgt = torch.randint(4, V, (size, length + 1), generator=generator)
    tgt[:, -1] = EOS_ID
    tgt[-1, 2:] = PAD_ID  # a padded target
    tgt_in = torch.cat([torch.full((size, 1), SOS_ID), tgt[:, :-1]], dim=1)
    return src, lengths, tgt_in, tgt


# --- tying ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("attention", "readout"), READOUTS)
def test_tied_decoder_shares_the_target_embedding_and_counts_drop_exactly(attention, readout):
    untied, tied, shared = model("none", attention), model("decoder", attention), model("all", attention)
    assert untied.decoder.output.weight.shape == (V, readout) and untied.decoder.projection is None
    for tied_model in (tied, shared):
        decoder = tied_model.decoder
        assert decoder.output.weight is decoder.embedding.weight
        assert decoder.projection.weight.shape == (E, readout)  # readout F -> embedding size E, no bias
        assert decoder.projection.bias is None
    assert shared.encoder.embedding.weight is shared.decoder.embedding.weight
    assert tied.encoder.embedding.weight is not tied.decoder.embedding.weight
    # decoder: the (V, F) output matrix goes, the (E, F) projection comes; all: the source matrix (V, E) goes too
    assert count(untied) - count(tied) == V * readout - E * readout
    assert count(tied) - count(shared) == V * E


def test_no_projection_when_the_readout_is_embedding_sized():
    settings = {"hidden_size": E, "bidirectional": False}
    untied, tied = model("none", **settings), model("decoder", **settings)
    assert tied.decoder.projection is None and tied.decoder.output.weight is tied.decoder.embedding.weight
    assert count(untied) - count(tied) == V * E


@pytest.mark.parametrize(("attention", "readout"), READOUTS)
def test_fused_loss_with_the_tied_weight_matches_plain_cross_entropy(attention, readout):
    tied = model("all", attention, dropout=0.0)
    src, lengths, tgt_in, tgt_out = batch()
    fused = tied.loss(src, lengths, tgt_in, tgt_out)  # the chunked output layer + loss (modules/loss.py)
    fused.backward()
    fused_grads = {name: p.grad.clone() for name, p in tied.named_parameters()}
    tied.zero_grad()
    plain = F.cross_entropy(tied(src, lengths, tgt_in).flatten(0, 1), tgt_out.flatten(), ignore_index=PAD_ID)
    plain.backward()
    torch.testing.assert_close(fused, plain)
    for name, p in tied.named_parameters():
        torch.testing.assert_close(fused_grads[name], p.grad, msg=name)
    # the one shared matrix (named once) gets gradient on every row from the output layer
    assert [name for name, p in tied.named_parameters() if p is tied.decoder.output.weight] == [
        "encoder.embedding.weight"
    ]
    assert fused_grads["encoder.embedding.weight"].abs().sum(1).gt(0).all()


def test_tied_weights_stay_one_tensor_after_a_step_and_a_checkpoint(tmp_path):
    tied = model("all", {"kind": "luong", "score": "general", "input_feeding": False})
    before = tied.decoder.embedding.weight.detach().clone()
    optimizer = torch.optim.Adam(tied.parameters(), lr=0.01)
    tied.loss(*batch()).backward()
    optimizer.step()
    weight = tied.decoder.embedding.weight
    assert not torch.equal(weight, before)  # it trained
    assert tied.decoder.output.weight is weight and tied.encoder.embedding.weight is weight
    state = tied.state_dict()
    assert {"encoder.embedding.weight", "decoder.embedding.weight", "decoder.output.weight"} <= set(state)
    torch.save(state, tmp_path / "model.pt")
    restored = model("all", {"kind": "luong", "score": "general", "input_feeding": False}, seed=1)
    restored.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True), strict=True)
    assert restored.decoder.output.weight is restored.decoder.embedding.weight is restored.encoder.embedding.weight
    torch.testing.assert_close(restored.decoder.embedding.weight, weight)
    src, lengths, tgt_in, _ = batch(seed=3)
    torch.testing.assert_close(restored.eval()(src, lengths, tgt_in), tied.eval()(src, lengths, tgt_in))


def test_tied_model_learns_to_copy_and_decodes_greedy_and_beam():
    torch.manual_seed(0)
    tied = Seq2Seq(
        V, V, embedding_dim=16, hidden_size=32, bidirectional=True, tie_embeddings="all", joint_vocab=True,
        attention={"kind": "luong", "score": "general", "input_feeding": False},
    )  # fmt: skip
    assert tied.decoder.projection is not None  # readout 64 -> embeddings 16
    optimizer = torch.optim.Adam(tied.parameters(), lr=0.01)
    for _ in range(120):
        src = torch.randint(4, V, (32, 5))
        tgt_in = torch.cat([torch.full((32, 1), SOS_ID), src], dim=1)
        tgt_out = torch.cat([src, torch.full((32, 1), EOS_ID)], dim=1)
        optimizer.zero_grad()
        tied.loss(src, torch.full((32,), 5), tgt_in, tgt_out).backward()
        optimizer.step()
    tied.eval()
    src = torch.randint(4, V, (64, 5), generator=torch.Generator().manual_seed(9))
    lengths = torch.full((64,), 5)
    expected = torch.cat([src, torch.full((64, 1), EOS_ID)], dim=1)
    greedy = GreedySearch(max_length=8)(tied, src, lengths, SOS_ID, EOS_ID, PAD_ID)
    beam = BeamSearch(beam_size=3, max_length=8)(tied, src, lengths, SOS_ID, EOS_ID, PAD_ID)
    for found in (greedy, beam):
        copied = (found.tokens[:, :6] == expected).all(1).float().mean()
        assert copied > 0.9
    # decoding step by step scores what the teacher-forced pass scores (both go through the projection)
    log_probs = tied(src, lengths, torch.cat([torch.full((64, 1), SOS_ID), greedy.tokens[:, :5]], 1)).log_softmax(-1)
    torch.testing.assert_close(greedy.scores, log_probs.gather(2, greedy.tokens[:, :6, None]).sum((1, 2)))


def test_tie_all_needs_a_joint_vocabulary():
    with pytest.raises(ConfigError, match="data.joint_vocab=true"):
        Seq2Seq(V, V, embedding_dim=E, hidden_size=H, tie_embeddings="all")  # joint_vocab not given
    with pytest.raises(ConfigError, match="source has 13 tokens and the target 11.*data.joint_vocab=true"):
        Seq2Seq(V, 11, embedding_dim=E, hidden_size=H, tie_embeddings="all", joint_vocab=True)
    with pytest.raises(ConfigError, match="none, decoder or all"):
        Seq2Seq(V, V, tie_embeddings="encoder")
    # train.py checks it before any data is read
    with pytest.raises(ConfigError, match="data.joint_vocab=true"):
        check_embedding_settings({"tie_embeddings": "all", "embedding_dim": E}, {"joint_vocab": False})
    check_embedding_settings({"tie_embeddings": "all", "embedding_dim": E}, {"joint_vocab": True})


# --- pretrained vectors ---------------------------------------------------------------------------------------

CORPUS = ["Ein Hund läuft, schnell.", "Eine Katze schläft.", "Der Hund und die Katze."] * 2


def word_tokenizer():
    return train_tokenizer(CORPUS, kind="word", vocab_size=100, min_freq=1)


def write_vectors(path: Path, vectors: dict[str, list[float]], header: bool) -> Path:
    lines = [f"{len(vectors)} {len(next(iter(vectors.values())))}"] if header else []
    # fastText writes a space after the last number
    lines += [f"{word} {' '.join(f'{x:.4f}' for x in vector)} " for word, vector in vectors.items()]
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        with gzip.open(path, "wt", encoding="utf-8") as file:
            file.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def vectors_for(dim: int) -> dict[str, list[float]]:
    generator = torch.Generator().manual_seed(dim)
    words = ["Hund", "katze", ",", "läuft", "Baum", "the", "Hund"]  # "Baum", "the": not in the vocabulary
    return {word: torch.randn(dim, generator=generator).tolist() for word in words}


def test_vector_keys_follow_the_tokenizers_spelling():
    tokens = word_tokenizer().encode("Ein Hund läuft,", add_special_tokens=False).tokens
    assert tokens == ["▁Ein", "▁Hund", "▁läuft", ","]
    assert [vector_keys(token) for token in tokens] == [["▁Ein", "Ein", "ein"], ["▁Hund", "Hund", "hund"],
                                                        ["▁läuft", "läuft"], [","]]  # fmt: skip
    assert vector_keys("▁") == ["▁"] and vector_keys("ung") == ["ung"]  # a char marker, a BPE continuation


@pytest.mark.parametrize("header", [True, False], ids=["header", "glove"])
@pytest.mark.parametrize("name", ["vectors.txt", "vectors.vec.gz"])
def test_pretrained_vectors_fill_known_rows_and_log_the_coverage(tmp_path, caplog, header, name):
    tokenizer = word_tokenizer()
    vocab = tokenizer.get_vocab()
    vectors = vectors_for(E)
    path = write_vectors(tmp_path / name, vectors, header)
    embedding = torch.nn.Embedding(len(vocab), E, padding_idx=PAD_ID)
    before = embedding.weight.detach().clone()
    caplog.set_level(logging.INFO, logger="seq2seq")
    found = load_vectors(embedding, vocab, path, "source")
    rounded = {word: torch.tensor([float(f"{x:.4f}") for x in vector]) for word, vector in vectors.items()}
    filled = {"▁Hund": "Hund", "▁Katze": "katze", ",": ",", "▁läuft": "läuft"}  # "▁Katze" by its lowercase form
    for token, word in filled.items():
        torch.testing.assert_close(embedding.weight[vocab[token]], rounded[word])
    unfilled = [index for token, index in vocab.items() if token not in filled]
    assert torch.equal(embedding.weight[unfilled], before[unfilled])  # specials and unknown words keep their init
    total = len(vocab) - 4
    assert found == 4
    assert f"source embeddings: 4 of {total} tokens found in {path} ({100 * 4 / total:.1f} %)" in caplog.text


def test_first_vector_of_a_word_wins_and_the_exact_spelling_beats_the_plain_word(tmp_path):
    vocab = word_tokenizer().get_vocab()
    path = tmp_path / "v.txt"
    path.write_text("▁Hund 1 1\nHund 2 2\nHund 3 3\nkatze 4 4\nKatze 5 5\n")
    embedding = torch.nn.Embedding(len(vocab), 2)
    load_vectors(embedding, vocab, path, "target")
    assert embedding.weight[vocab["▁Hund"]].tolist() == [1, 1]
    assert embedding.weight[vocab["▁Katze"]].tolist() == [5, 5]  # "Katze" before the lowercase "katze"


def test_vector_file_errors_are_one_line(tmp_path):
    vocab = word_tokenizer().get_vocab()
    embedding = torch.nn.Embedding(len(vocab), E)
    wide = write_vectors(tmp_path / "wide.txt", vectors_for(E + 2), header=True)
    with pytest.raises(ConfigError, match=rf"holds {E + 2}-dimensional vectors but model.embedding_dim={E}: "
                       rf"set model.embedding_dim={E + 2}"):  # fmt: skip
        load_vectors(embedding, vocab, wide, "source")
    with pytest.raises(ConfigError, match="does not exist: fix model.pretrained_embeddings"):
        load_vectors(embedding, vocab, tmp_path / "missing.vec", "source")
    (tmp_path / "bad.gz").write_bytes(b"not gzip at all")
    (tmp_path / "binary.bin").write_bytes(b"3 2\n\xff\xfe\x00\x01")
    (tmp_path / "short.txt").write_text("Hund 1 2 3\nNew York 1 2 3\nkatze 1 2\n")  # "New York": skipped
    (tmp_path / "text.txt").write_text("Hund 1 2 3\nkatze 1 x 3\n")
    for name, message in [
        ("bad.gz", "cannot read"),
        ("binary.bin", "cannot read"),
        ("short.txt", "line 3: the vector of 'katze' is not 3 numbers"),
        ("text.txt", "line 2: the vector of 'katze' is not 3 numbers"),
    ]:
        with pytest.raises(DataError, match=message):
            load_vectors(torch.nn.Embedding(len(vocab), 3), vocab, tmp_path / name, "source")
    with pytest.raises(ConfigError, match="no key sourse"):
        load_pretrained_embeddings(model(), {"sourse": str(wide)}, {})


@pytest.mark.parametrize("freeze", [True, False])
def test_freeze_keeps_the_loaded_embedding_fixed(tmp_path, freeze):
    tokenizer = train_tokenizer(CORPUS, kind="word", vocab_size=V, min_freq=1)
    state = {"source": tokenizer_to_str(tokenizer), "target": tokenizer_to_str(tokenizer)}
    path = write_vectors(tmp_path / "v.txt", vectors_for(E), header=False)
    spec = {"source": str(path), "target": None, "freeze": freeze}
    torch.manual_seed(0)
    pretrained = Seq2Seq(V, V, embedding_dim=E, hidden_size=H, pretrained_embeddings=spec)
    load_pretrained_embeddings(pretrained, spec, state)
    source_before = pretrained.encoder.embedding.weight.detach().clone()
    target_before = pretrained.decoder.embedding.weight.detach().clone()
    optimizer = torch.optim.Adam(pretrained.parameters(), lr=0.01)
    pretrained.loss(*batch()).backward()
    optimizer.step()
    assert torch.equal(pretrained.encoder.embedding.weight, source_before) == freeze
    assert not torch.equal(pretrained.decoder.embedding.weight, target_before)  # no file: trained
    with pytest.raises(ConfigError, match="freezes only loaded vectors"):
        Seq2Seq(V, V, pretrained_embeddings={"source": None, "target": None, "freeze": True})


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("train", overrides=["experiment=reverse", *overrides])


def test_vectors_are_loaded_for_training_and_never_needed_again(tmp_path, caplog):
    """build_module fills the embeddings; a checkpoint restores without the vector file."""
    tokenizer = train_tokenizer(CORPUS, kind="word", vocab_size=100, min_freq=1)
    state = {"source": tokenizer_to_str(tokenizer), "target": tokenizer_to_str(tokenizer)}
    path = write_vectors(tmp_path / "v.txt.gz", vectors_for(16), header=True)
    cfg = compose_train(
        "model.embedding_dim=16",
        f"model.pretrained_embeddings.target={path}",
        "model.pretrained_embeddings.freeze=true",
        "model.tie_embeddings=all",
        "data.joint_vocab=true",
    )
    caplog.set_level(logging.INFO, logger="seq2seq")
    check_embedding_settings(cfg.model, cfg.data)
    module = build_module(cfg, state, config={})
    assert "target embeddings: 4 of" in caplog.text
    weight = module.model.decoder.embedding.weight
    assert weight is module.model.encoder.embedding.weight and not weight.requires_grad  # tied and frozen
    torch.testing.assert_close(weight[tokenizer.token_to_id("▁Hund")], torch.tensor(vectors_for(16)["Hund"]),
                               atol=1e-4, rtol=0)  # fmt: skip
    path.unlink()  # eval.py and translate.py read the weights from the checkpoint, not the vectors
    checkpoint = {"seq2seq": {"tokenizers": state, "config": dict(cfg)}, "state_dict": module.state_dict()}
    restored = restore_module(checkpoint, cfg)
    assert torch.equal(restored.model.decoder.embedding.weight, weight)
    with pytest.raises(ConfigError, match="does not exist"):  # a fresh training build needs the file
        check_embedding_settings(cfg.model, cfg.data)
    check_embedding_settings(cfg.model, cfg.data, resuming=True)  # resuming: the checkpoint has the weights


def test_wrong_vector_size_fails_before_the_data_is_read(tmp_path):
    path = write_vectors(tmp_path / "v.txt", vectors_for(5), header=False)
    cfg = compose_train(f"model.pretrained_embeddings.source={path}", "model.embedding_dim=16")
    with pytest.raises(ConfigError, match="5-dimensional vectors but model.embedding_dim=16"):
        check_embedding_settings(cfg.model, cfg.data)


def test_special_tokens_are_never_filled(tmp_path):
    vocab = word_tokenizer().get_vocab()
    path = tmp_path / "specials.txt"
    path.write_text("<unk> 9 9\n<pad> 9 9\n<eos> 9 9\n")
    embedding = torch.nn.Embedding(len(vocab), 2)
    before = embedding.weight.detach().clone()
    assert load_vectors(embedding, vocab, path, "source") == 0
    assert torch.equal(embedding.weight, before)


def test_train_with_joint_tied_pretrained_then_translate_without_the_vectors(tmp_path):
    from conftest import TINY_JOB, run_cli, run_dirs, translate

    vectors = write_vectors(tmp_path / "v.vec", {"t1": [0.5] * 8, "t2": [-0.5] * 8}, header=True)
    overrides = [f"paths.cache_dir={tmp_path}/cache/", "data.joint_vocab=true", "model.tie_embeddings=all"]
    overrides += ["attention=bahdanau", f"model.pretrained_embeddings.source={vectors}"]
    run_cli("train", *TINY_JOB, *overrides, log_dir=tmp_path / "logs")
    (run,) = run_dirs(tmp_path / "logs", "train")
    assert sorted(path.name for path in run.glob("tokenizer*.json")) == ["tokenizer.json"]  # saved once
    assert f"source embeddings: 2 of 20 tokens found in {vectors} (10.0 %)" in (run / "train.log").read_text()
    vectors.unlink()  # the checkpoint holds the weights
    result = translate(run / "checkpoints" / "best.ckpt", "t1 t2 t3\nt4\n")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2
