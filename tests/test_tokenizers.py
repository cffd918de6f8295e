"""Tokenizers: fixed special ids, lossless round trips, decoding rules, JSON serialization."""

from __future__ import annotations

import pytest
import torch

from seq2seq.data.tokenizers import (
    EOS,
    EOS_ID,
    KINDS,
    PAD,
    PAD_ID,
    SOS,
    SOS_ID,
    UNK,
    UNK_ID,
    decode,
    encode,
    tokenizer_from_str,
    tokenizer_to_str,
    train_tokenizer,
)
from seq2seq.errors import ConfigError, DataError

CORPUS = [
    "Ein Hund läuft, schnell.",
    "Zwei Männer stehen am Strand (im Sonnenschein)!",
    'Eine Frau sagt: "Hallo, Welt?"',
    "Das Kind isst ein Eis; es ist 3,5 km weit.",
    "Ein Mann's Hut ist rot-weiß.",
    "톰은 프랑스어를 배웠어.",
] * 3


@pytest.fixture(scope="module", params=KINDS)
def tokenizer(request):
    return train_tokenizer(CORPUS, kind=request.param, vocab_size=500, min_freq=1, lowercase=False)


def test_special_tokens_have_fixed_ids(tokenizer):
    assert (PAD_ID, UNK_ID, SOS_ID, EOS_ID) == (0, 1, 2, 3)
    for token, index in ((PAD, PAD_ID), (UNK, UNK_ID), (SOS, SOS_ID), (EOS, EOS_ID)):
        assert tokenizer.token_to_id(token) == index


@pytest.mark.parametrize("sentence", sorted(set(CORPUS)))
def test_round_trip_is_lossless(tokenizer, sentence):
    ids = encode(tokenizer, sentence)
    assert ids and all(i > EOS_ID for i in ids)  # no specials, nothing unknown
    assert decode(tokenizer, ids) == sentence


def test_punctuation_is_split_off_words():
    tokenizer = train_tokenizer(CORPUS, kind="word", vocab_size=500, min_freq=1, lowercase=False)
    tokens = tokenizer.encode("Ein Hund läuft, schnell.", add_special_tokens=False).tokens
    assert tokens == ["▁Ein", "▁Hund", "▁läuft", ",", "▁schnell", "."]


def test_decode_stops_at_eos_and_skips_pad_and_sos(tokenizer):
    ids = encode(tokenizer, "Ein Hund läuft, schnell.")
    assert decode(tokenizer, [SOS_ID, *ids, EOS_ID, *ids, PAD_ID]) == "Ein Hund läuft, schnell."
    assert decode(tokenizer, torch.tensor([SOS_ID, *ids, EOS_ID, PAD_ID, PAD_ID])) == "Ein Hund läuft, schnell."
    assert decode(tokenizer, [EOS_ID, *ids]) == ""


def test_unknown_word_decodes_as_a_separate_unk():
    tokenizer = train_tokenizer(CORPUS, kind="word", vocab_size=500, min_freq=1, lowercase=False)
    ids = encode(tokenizer, "Ein Zebra läuft.")
    assert UNK_ID in ids
    assert decode(tokenizer, ids) == "Ein <unk> läuft."


def test_unknown_character_decodes_inside_the_word():
    tokenizer = train_tokenizer(CORPUS, kind="char", vocab_size=500, min_freq=1, lowercase=False)
    ids = encode(tokenizer, "Ein Qund")  # no "Q" in the corpus
    assert decode(tokenizer, ids) == "Ein <unk>und"


def test_min_freq_and_vocab_size_limit_the_vocabulary():
    texts = ["a a a b b c"] * 2
    assert train_tokenizer(texts, "word", 100, min_freq=3, lowercase=False).get_vocab_size() == 4 + 2  # ▁a ▁b
    assert train_tokenizer(texts, "word", 5, min_freq=1, lowercase=False).get_vocab_size() == 5


def test_lowercase():
    tokenizer = train_tokenizer(["Hallo Welt"], "word", 100, min_freq=1, lowercase=True)
    assert decode(tokenizer, encode(tokenizer, "HALLO Welt")) == "hallo welt"


def test_training_is_deterministic():
    for kind in KINDS:
        first = train_tokenizer(CORPUS, kind, 300, 1, False)
        second = train_tokenizer(list(reversed(CORPUS)), kind, 300, 1, False)
        assert tokenizer_to_str(first) == tokenizer_to_str(second)


def test_unknown_kind_names_the_choices():
    with pytest.raises(ConfigError, match="word, bpe or char"):
        train_tokenizer(CORPUS, kind="sentencepiece", vocab_size=100, min_freq=1, lowercase=False)


def test_json_round_trip(tokenizer):
    text = tokenizer_to_str(tokenizer)
    assert isinstance(text, str) and text.startswith("{")
    again = tokenizer_from_str(text)
    sentence = "Zwei Männer stehen am Strand (im Sonnenschein)!"
    assert encode(again, sentence) == encode(tokenizer, sentence)
    assert decode(again, encode(again, sentence)) == sentence


def test_from_str_rejects_garbage():
    with pytest.raises(DataError, match="not valid tokenizer JSON"):
        tokenizer_from_str("{not json")
