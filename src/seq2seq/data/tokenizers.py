"""Word, BPE and character tokenizers (Hugging Face ``tokenizers``) with fixed special-token ids.

Detokenization is lossless up to Unicode NFKC normalization, whitespace runs and (if asked) lowercasing:
spaces are kept as the ``▁`` marker (Metaspace) and punctuation is split off as its own token, so
``decode(encode(s)) == s`` for ordinary sentences and BLEU on detokenized text is meaningful.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

from seq2seq.errors import ConfigError, DataError

PAD, UNK, SOS, EOS = "<pad>", "<unk>", "<sos>", "<eos>"
PAD_ID, UNK_ID, SOS_ID, EOS_ID = 0, 1, 2, 3
SPECIAL_TOKENS = (PAD, UNK, SOS, EOS)  # in id order
KINDS = ("word", "bpe", "char")
SPACE = "▁"  # U+2581, the word-start marker (as in SentencePiece)


def _pre_tokenizer(kind: str) -> pre_tokenizers.PreTokenizer:
    metaspace = pre_tokenizers.Metaspace(replacement=SPACE, prepend_scheme="always")
    if kind == "char":
        return pre_tokenizers.Sequence([metaspace, pre_tokenizers.Split(Regex("."), behavior="isolated")])
    return pre_tokenizers.Sequence([metaspace, pre_tokenizers.Punctuation()])


def train_tokenizer(
    texts: Iterable[str] | Iterable[list[str]],
    kind: str = "word",
    vocab_size: int = 10000,
    min_freq: int = 2,
    lowercase: bool = False,
) -> Tokenizer:
    """Train a tokenizer on ``texts`` (the train split only).

    Args:
        texts: the training sentences, one by one or in batches (lists of sentences: faster, and a batch at a time
            is all that has to be in memory).
        kind: ``"word"`` (words and punctuation), ``"bpe"`` (byte-pair subwords) or ``"char"`` (characters).
        vocab_size: the largest vocabulary, the four special tokens included.
        min_freq: tokens (word/char) or merges (BPE) seen fewer times are left out.
        lowercase: lowercase before tokenizing (then detokenized text is lowercase too).

    Returns:
        A tokenizer with ``<pad>``=0, ``<unk>``=1, ``<sos>``=2, ``<eos>``=3.
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown tokenizer {kind!r}: use data.tokenizer=word, bpe or char")
    if kind == "bpe":
        tokenizer = Tokenizer(models.BPE(unk_token=UNK))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, min_frequency=min_freq, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    else:
        tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
        trainer = trainers.WordLevelTrainer(
            vocab_size=vocab_size, min_frequency=min_freq, special_tokens=list(SPECIAL_TOKENS), show_progress=False
        )
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = _pre_tokenizer(kind)
    tokenizer.decoder = decoders.Metaspace(replacement=SPACE, prepend_scheme="always")
    tokenizer.train_from_iterator(texts, trainer)
    check_special_ids(tokenizer)
    return tokenizer


def check_special_ids(tokenizer: Tokenizer) -> None:
    """Raise a DataError unless the special tokens have the fixed ids 0-3."""
    for expected, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected:
            raise DataError(
                f"tokenizer has {token} at id {tokenizer.token_to_id(token)}, not {expected}: "
                "use a tokenizer made by seq2seq.data.tokenizers.train_tokenizer"
            )


def encode(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens."""
    return tokenizer.encode(text, add_special_tokens=False).ids


def encode_batch(tokenizer: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of many texts at once (parallel in Rust), without special tokens.

    ``encode_batch_fast`` gives the same ids as ``encode_batch`` without computing character offsets.
    """
    return [encoding.ids for encoding in tokenizer.encode_batch_fast(texts, add_special_tokens=False)]


def _splits_words(tokenizer: Tokenizer) -> bool:
    """Whether tokens are whole words (a word-level model), so an ``<unk>`` stands for a word of its own."""
    if not isinstance(tokenizer.model, models.WordLevel):
        return False
    pre = tokenizer.pre_tokenizer
    try:
        return not any(isinstance(pre[i], pre_tokenizers.Split) for i in range(2))
    except (TypeError, IndexError):
        return True


def decode(tokenizer: Tokenizer, ids: Iterable[int]) -> str:
    """Detokenize ids: stop at ``<eos>``, skip ``<pad>``/``<sos>``, keep ``<unk>`` as the text ``<unk>``.

    Accepts a list or a 1-D tensor. With the word tokenizer an ``<unk>`` is a word of its own (``"a <unk> b"``);
    with BPE/char it stands for one symbol inside a word.
    """
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    unknown = SPACE + UNK if _splits_words(tokenizer) else UNK
    tokens = []
    for index in ids:
        if index == EOS_ID:
            break
        if index in (PAD_ID, SOS_ID):
            continue
        token = tokenizer.id_to_token(index) if index != UNK_ID else None
        tokens.append(unknown if token is None else token)
    if tokenizer.decoder is None:
        return " ".join(tokens)
    return tokenizer.decoder.decode(tokens)


def vector_keys(token: str) -> list[str]:
    """How a word-vector file may spell ``token``, in order of preference.

    The token itself (subword vectors such as BPEmb keep the ``▁`` marker), then, for a token that starts a word,
    the plain word (``▁Hund`` → ``Hund``: word vectors have no marker), then that word lowercased.
    """
    keys = [token]
    if token.startswith(SPACE) and len(token) > len(SPACE):
        word = token[len(SPACE) :]
        keys += [word] + ([word.lower()] if word.lower() != word else [])
    return keys


def tokenizer_to_str(tokenizer: Tokenizer) -> str:
    """The tokenizer as a JSON string (what checkpoints store)."""
    return tokenizer.to_str()


def tokenizer_from_str(text: str) -> Tokenizer:
    """Rebuild a tokenizer from :func:`tokenizer_to_str`'s JSON string."""
    try:
        tokenizer = Tokenizer.from_str(text)
    except Exception as error:  # the Rust side raises a plain Exception
        raise DataError(f"stored tokenizer is not valid tokenizer JSON ({error}): re-create the checkpoint") from None
    check_special_ids(tokenizer)
    return tokenizer
