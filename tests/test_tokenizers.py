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


# --- joint vocabulary (data.joint_vocab=true) -----------------------------------------------------------------


class PairsSource:
    """An in-memory source: the same pairs in every split."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = pairs

    def cache_key(self) -> dict:
        return {"pairs": self.pairs}

    def load(self):
        from datasets import Dataset, DatasetDict

        columns = {"source": [s for s, _ in self.pairs], "target": [t for _, t in self.pairs]}
        return DatasetDict({split: Dataset.from_dict(columns) for split in ("train", "val", "test")})


# "Katze" and "Hund" appear on the source side only, "cat" and "dog" on the target side only
PAIRS = [("eine Katze", "a cat"), ("ein Hund", "a dog"), ("eine Katze und ein Hund", "a cat and a dog")]


def joint_datamodule(tmp_path, kind: str, joint: bool = True, **settings):
    from seq2seq.data.datamodule import Seq2SeqDataModule

    return Seq2SeqDataModule(
        PairsSource(PAIRS),
        "de",
        "en",
        tokenizer=kind,
        vocab_size=200,
        min_freq=1,
        joint_vocab=joint,
        cache_dir=str(tmp_path / "cache"),
        **settings,
    )


@pytest.mark.parametrize("kind", KINDS)
def test_joint_vocab_is_one_tokenizer_for_both_sides(tmp_path, kind):
    dm = joint_datamodule(tmp_path, kind)
    dm.setup("fit")
    assert dm.joint_vocab
    assert dm.src_tokenizer.get_vocab() == dm.tgt_tokenizer.get_vocab()
    assert dm.src_vocab_size == dm.tgt_vocab_size
    # a word seen only in target text is known to the source tokenizer, with the target's ids (and vice versa)
    for text in ("a cat", "ein Hund"):
        ids = encode(dm.src_tokenizer, text)
        assert UNK_ID not in ids and ids == encode(dm.tgt_tokenizer, text)
        assert decode(dm.src_tokenizer, ids) == text
    state = dm.tokenizers_state()
    assert state["source"] == state["target"]  # the checkpoint's two keys hold the one tokenizer
    # saved once in the run dir
    dm.save_tokenizers(tmp_path / "run")
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == ["tokenizer.json"]
    assert tokenizer_from_str((tmp_path / "run" / "tokenizer.json").read_text()).get_vocab() == (
        dm.src_tokenizer.get_vocab()
    )


def test_separate_vocabularies_do_not_know_the_other_side(tmp_path):
    dm = joint_datamodule(tmp_path, "word", joint=False)
    dm.setup("fit")
    assert not dm.joint_vocab
    assert UNK_ID in encode(dm.src_tokenizer, "a cat")
    dm.save_tokenizers(tmp_path / "run")
    assert sorted(path.name for path in (tmp_path / "run").iterdir()) == [
        "tokenizer.source.json",
        "tokenizer.target.json",
    ]


def test_joint_vocab_is_part_of_the_cache_key(tmp_path):
    separate, joint = joint_datamodule(tmp_path, "word", joint=False), joint_datamodule(tmp_path, "word")
    assert separate.cache_path() != joint.cache_path()
    joint.setup("fit")
    again = joint_datamodule(tmp_path, "word")
    again.setup("fit")
    assert again.cache_hit and again.joint_vocab and again.tokenizers_state() == joint.tokenizers_state()


def test_given_joint_tokenizers_stay_joint(tmp_path):
    trained = joint_datamodule(tmp_path, "bpe")
    trained.setup("fit")
    # as eval.py and translate.py rebuild it from a checkpoint, whatever data.joint_vocab says
    restored = joint_datamodule(tmp_path, "bpe", joint=False, tokenizers=trained.tokenizers_state())
    assert restored.joint_vocab
    assert restored.tokenizers_state() == trained.tokenizers_state()
