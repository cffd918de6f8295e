"""Data sources (every format and its errors), the bundled datasets, the data configs and the datamodule."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

import seq2seq.data.datamodule as datamodule_module
import seq2seq.data.sources as sources_module
from seq2seq.data.datamodule import Seq2SeqDataModule
from seq2seq.data.sources import (
    FileSource,
    HubSource,
    ParallelTextSource,
    ReverseSource,
    SplitSource,
    TabularSource,
)
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, encode_batch
from seq2seq.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
CONF = REPO / "conf" / "data"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def pairs(dataset) -> list[tuple[str, str]]:
    return list(zip(dataset["source"], dataset["target"]))


def parallel_files(root: Path, n: dict[str, int] | None = None) -> Path:
    """Write ``root/{train,val,test}.{de,en}`` with ``n[split]`` pairs; train.de is gzipped."""
    n = n or {"train": 6, "val": 2, "test": 2}
    for split, count in n.items():
        de = "".join(f"  Hallo Nummer {i}, {split}.  \n" for i in range(count))
        en = "".join(f"Hello number {i}, {split}.\n" for i in range(count))
        if split == "train":
            root.mkdir(parents=True, exist_ok=True)
            with gzip.open(root / "train.de.gz", "wt", encoding="utf-8") as file:
                file.write(de)
        else:
            write(root / f"{split}.de", de)
        write(root / f"{split}.en", en)
    return root


def parallel_source(root: Path) -> ParallelTextSource:
    return ParallelTextSource(str(root / "train"), str(root / "val"), str(root / "test"), "de", "en")


# --- ParallelTextSource ---------------------------------------------------------------------------------------


def test_parallel_text_reads_plain_and_gz_and_strips(tmp_path):
    data = parallel_source(parallel_files(tmp_path)).load()
    assert list(data) == ["train", "val", "test"]
    assert {split: len(ds) for split, ds in data.items()} == {"train": 6, "val": 2, "test": 2}
    assert data["train"].column_names == ["source", "target"]
    assert pairs(data["train"])[1] == ("Hallo Nummer 1, train.", "Hello number 1, train.")


def test_parallel_text_direction_follows_the_languages(tmp_path):
    root = parallel_files(tmp_path)
    flipped = ParallelTextSource(str(root / "train"), str(root / "val"), str(root / "test"), "en", "de").load()
    assert pairs(flipped["val"])[0] == ("Hello number 0, val.", "Hallo Nummer 0, val.")


def test_missing_file_names_path_and_key(tmp_path):
    root = parallel_files(tmp_path)
    (root / "test.en").unlink()
    with pytest.raises(DataError) as error:
        parallel_source(root).load()
    message = str(error.value)
    assert f"{root / 'test'}.en" in message and "data.source.test" in message and "\n" not in message


def test_missing_language_lists_the_languages_found(tmp_path):
    root = parallel_files(tmp_path)
    source = ParallelTextSource(str(root / "train"), str(root / "val"), str(root / "test"), "fr", "en")
    with pytest.raises(DataError, match=r"found languages de, en: set data.source_lang"):
        source.load()


def test_line_count_mismatch_names_both_files_and_counts(tmp_path):
    root = parallel_files(tmp_path)
    write(root / "val.en", "one\ntwo\nthree\n")
    with pytest.raises(DataError) as error:
        parallel_source(root).load()
    message = str(error.value)
    assert "val.de has 2 lines" in message and "val.en has 3" in message and "line-aligned" in message


def test_non_utf8_names_file_and_line(tmp_path):
    root = parallel_files(tmp_path)
    (root / "test.de").write_bytes("gut\nschl\xe4ft\n".encode("latin-1"))
    with pytest.raises(DataError) as error:
        parallel_source(root).load()
    assert "test.de is not UTF-8" in str(error.value) and "line 2" in str(error.value)


def test_empty_split_is_named(tmp_path):
    root = parallel_files(tmp_path)
    write(root / "val.de", "")
    write(root / "val.en", "")
    with pytest.raises(DataError, match=r"the val split is empty \(.*val.de\)"):
        parallel_source(root).load()


# --- tables ---------------------------------------------------------------------------------------------------


def tables(root: Path) -> dict[str, Path]:
    rows = [{"de": f" Satz {i} ", "en": f"Sentence {i}", "id": i} for i in range(4)]
    train = write(root / "train.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    val = write(root / "val.csv", 'id,de,en\r\n1,"Ja, gut",NA\r\n2,1,null\r\n')
    test = write(root / "test.tsv", 'id\tde\ten\n1\t"Zitat\tnone\n')
    return {"train": train, "val": val, "test": test}


def test_tabular_reads_jsonl_csv_tsv_as_strings(tmp_path):
    paths = tables(tmp_path)
    data = TabularSource(str(paths["train"]), str(paths["val"]), str(paths["test"]), "de", "en").load()
    assert data["train"].column_names == ["source", "target"]
    assert pairs(data["train"])[0] == ("Satz 0", "Sentence 0")
    assert pairs(data["val"]) == [("Ja, gut", "NA"), ("1", "null")]  # no NaN, no ints
    assert pairs(data["test"]) == [('"Zitat', "none")]  # TSV has no quoting


def test_missing_column_lists_the_columns(tmp_path):
    paths = tables(tmp_path)
    source = TabularSource(str(paths["train"]), str(paths["val"]), str(paths["test"]), "german", "en")
    with pytest.raises(DataError) as error:
        source.load()
    message = str(error.value)
    assert "no column 'german'" in message and "de, en, id" in message and "source_column" in message


def test_unknown_table_format(tmp_path):
    paths = tables(tmp_path)
    odd = write(tmp_path / "train.xlsx", "x")
    with pytest.raises(DataError, match=r"unknown file format '.xlsx'"):
        TabularSource(str(odd), str(paths["val"]), str(paths["test"]), "de", "en").load()


def test_null_value_names_the_row(tmp_path):
    paths = tables(tmp_path)
    bad = write(tmp_path / "bad.jsonl", '{"de": "a", "en": "b"}\n{"de": "c", "en": null}\n')
    with pytest.raises(DataError, match=r"column 'en' has no value in row 2"):
        TabularSource(str(bad), str(paths["val"]), str(paths["test"]), "de", "en").load()


def test_malformed_csv_is_a_data_error(tmp_path):
    paths = tables(tmp_path)
    bad = write(tmp_path / "bad.csv", "de,en\na,b\nc,d,e,f\n")
    with pytest.raises(DataError, match=r"cannot parse .*bad.csv as CSV"):
        TabularSource(str(bad), str(paths["val"]), str(paths["test"]), "de", "en").load()


@pytest.mark.parametrize(
    ("name", "text", "line", "fields"),
    [
        ("short.csv", 'de,en\na,b\n"c\nd",e\n\nf\ng,h\n', 6, "1 field"),  # a quoted newline, a blank line
        ("short.tsv", "de\ten\na\tb\nc\n", 3, "1 field"),
        ("long.csv", "de,en\na,b\nc,d,e,f\n", 3, "4 fields"),
    ],
)
def test_csv_row_with_missing_or_extra_fields_names_file_and_line(tmp_path, name, text, line, fields):
    paths = tables(tmp_path)
    bad = write(tmp_path / name, text)
    with pytest.raises(DataError) as error:
        TabularSource(str(bad), str(paths["val"]), str(paths["test"]), "de", "en").load()
    message = str(error.value)
    assert str(bad) in message and f"line {line} has {fields}" in message and "header has 2" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("text", "line"),
    [('{"de": "a", "en": "b"}\n\n{"de": "c", "en" "d"}\n', 3), ('{"de": "a", "en": "b"}\n[1, 2]\n', 2)],
)
def test_malformed_json_lines_names_file_and_line(tmp_path, text, line):
    paths = tables(tmp_path)
    bad = write(tmp_path / "bad.jsonl", text)
    with pytest.raises(DataError) as error:
        TabularSource(str(bad), str(paths["val"]), str(paths["test"]), "de", "en").load()
    message = str(error.value)
    assert f"cannot parse {bad} as JSON Lines: line {line}" in message and "\n" not in message


def test_non_utf8_table_is_caught_before_parsing(tmp_path):
    paths = tables(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"de,en\na,b\n\xe4,c\n")
    with pytest.raises(DataError, match=r"bad.csv is not UTF-8 text \(invalid byte at line 3\)"):
        TabularSource(str(bad), str(paths["val"]), str(paths["test"]), "de", "en").load()


def test_json_array_table(tmp_path):
    paths = tables(tmp_path)
    array = write(tmp_path / "val.json", json.dumps([{"de": "eins", "en": "one"}, {"de": "zwei", "en": "two"}]))
    data = TabularSource(str(paths["train"]), str(array), str(paths["test"]), "de", "en").load()
    assert pairs(data["val"]) == [("eins", "one"), ("zwei", "two")]


# --- FileSource (data=files) ----------------------------------------------------------------------------------


def test_files_mixes_tables_and_prefixes(tmp_path):
    paths = tables(tmp_path)
    root = parallel_files(tmp_path / "txt")
    source = FileSource(str(paths["train"]), str(root / "val"), str(paths["test"]), "de", "en", "de", "en")
    data = source.load()
    assert {split: len(ds) for split, ds in data.items()} == {"train": 4, "val": 2, "test": 1}


def test_files_carves_val_and_test_from_train(tmp_path):
    lines = [f"pair {i}" for i in range(100)]
    write(tmp_path / "all.src", "\n".join(lines) + "\n")
    write(tmp_path / "all.tgt", "\n".join(lines) + "\n")
    data = FileSource(str(tmp_path / "all")).load()
    sizes = {split: len(ds) for split, ds in data.items()}
    assert sizes == {"train": 90, "val": 5, "test": 5}
    texts = {split: set(ds["source"]) for split, ds in data.items()}
    assert not (texts["train"] & texts["val"] or texts["train"] & texts["test"] or texts["val"] & texts["test"])
    assert set.union(*texts.values()) == set(lines)
    again = FileSource(str(tmp_path / "all")).load()
    assert all(pairs(again[s]) == pairs(data[s]) for s in data)  # fixed seed


def test_files_carves_at_least_one_pair(tmp_path):
    write(tmp_path / "t.src", "a\nb\nc\n")
    write(tmp_path / "t.tgt", "A\nB\nC\n")
    data = FileSource(str(tmp_path / "t")).load()
    assert {split: len(ds) for split, ds in data.items()} == {"train": 1, "val": 1, "test": 1}
    write(tmp_path / "u.src", "a\nb\n")
    write(tmp_path / "u.tgt", "A\nB\n")
    with pytest.raises(DataError, match="too few"):
        FileSource(str(tmp_path / "u")).load()


def test_files_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"neither a file nor the prefix .*: set data.train"):
        FileSource(str(tmp_path / "nothing")).load()


def test_files_one_side_missing(tmp_path):
    write(tmp_path / "t.src", "a\n")
    with pytest.raises(DataError, match=r"t.tgt .* next to .*t.src"):
        FileSource(str(tmp_path / "t")).load()


# --- SplitSource and the bundled data -------------------------------------------------------------------------


def test_tatoeba_format_and_grouped_split(tmp_path):
    lines = [f"Sentence {i // 2}.\t문장 {i}.\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}" for i in range(40)]
    path = write(tmp_path / "kor.txt", "\n".join(lines) + "\n")
    data = SplitSource(str(path), "tatoeba", "ko", "en", val_size=4, test_size=0.1, seed=3).load()
    assert sum(len(ds) for ds in data.values()) == 40 and len(data["val"]) == 4 and len(data["test"]) == 4
    assert pairs(data["train"])[0][0].startswith("문장")
    english = {split: set(ds["target"]) for split, ds in data.items()}
    assert not (english["train"] & english["val"] or english["train"] & english["test"])  # groups kept together
    flipped = SplitSource(str(path), "tatoeba", "en", "ko", val_size=4, test_size=0.1, seed=3).load()
    assert pairs(flipped["test"]) == [(t, s) for s, t in pairs(data["test"])]


def test_tatoeba_bad_line_and_languages(tmp_path):
    path = write(tmp_path / "kor.txt", "Go.\t가.\tx\nno tab here\n")
    with pytest.raises(DataError, match=r"line 2 has no tab"):
        SplitSource(str(path), "tatoeba", "ko", "en", 0, 0, 1).load()
    with pytest.raises(ConfigError, match="en and ko"):
        SplitSource(str(path), "tatoeba", "de", "en")
    with pytest.raises(ConfigError, match="tatoeba, chatbot"):
        SplitSource(str(path), "excel")


def test_chatbot_format_with_crlf(tmp_path):
    rows = "".join(f"질문 {i}?,대답 {i}.,{i % 3}\r\n" for i in range(30))
    path = write(tmp_path / "chat.csv", "Q,A,label\r\n" + rows.removesuffix("\r\n"))
    data = SplitSource(str(path), "chatbot", val_size=3, test_size=3, seed=0).load()
    assert {split: len(ds) for split, ds in data.items()} == {"train": 24, "val": 3, "test": 3}
    assert all(s.startswith("질문") and t.startswith("대답") for s, t in pairs(data["train"]))
    bad = write(tmp_path / "bad.csv", "question,answer\r\na,b\r\n")
    with pytest.raises(DataError, match=r"no column 'Q' \(columns found: question, answer\)"):
        SplitSource(str(bad), "chatbot").load()


def test_bundled_multi30k_counts():
    source = ParallelTextSource(
        str(DATA / "multi30k/train"), str(DATA / "multi30k/val"), str(DATA / "multi30k/test_2016_flickr"), "de", "en"
    )
    data = source.load()
    assert {split: len(ds) for split, ds in data.items()} == {"train": 29000, "val": 1014, "test": 1000}
    assert all(s and t for s, t in pairs(data["val"]))


@pytest.mark.parametrize(
    ("name", "fmt", "key_side"),
    [("ko_en_tatoeba/kor.txt", "tatoeba", "target"), ("chatbot_ko/ChatbotData.csv", "chatbot", "source")],
)
def test_bundled_one_file_splits_are_deterministic_and_disjoint(name, fmt, key_side):
    first = SplitSource(str(DATA / name), fmt, val_size=500, test_size=500, seed=1234).load()
    second = SplitSource(str(DATA / name), fmt, val_size=500, test_size=500, seed=1234).load()
    assert all(pairs(first[s]) == pairs(second[s]) for s in first)
    assert 500 <= len(first["val"]) <= 510 and 500 <= len(first["test"]) <= 510
    keys = {split: set(ds[key_side]) for split, ds in first.items()}  # English sentence / question
    assert not (keys["train"] & keys["val"] or keys["train"] & keys["test"] or keys["val"] & keys["test"])
    other = SplitSource(str(DATA / name), fmt, val_size=500, test_size=500, seed=99).load()
    assert pairs(other["test"]) != pairs(first["test"])


# --- HubSource ------------------------------------------------------------------------------------------------


def hub_dir(root: Path) -> Path:
    for split, count in (("train", 5), ("validation", 2), ("test", 3)):
        rows = [{"translation": {"de": f"Hallo {i}", "en": f"Hello {i}"}} for i in range(count)]
        write(root / f"{split}.jsonl", "".join(json.dumps(row) + "\n" for row in rows))
    return root


def test_hub_source_reads_a_local_directory_with_dotted_columns(tmp_path):
    root = hub_dir(tmp_path / "hub")
    data = HubSource(str(root), None, "translation.de", "translation.en").load()
    assert {split: len(ds) for split, ds in data.items()} == {"train": 5, "val": 2, "test": 3}
    assert pairs(data["val"])[1] == ("Hallo 1", "Hello 1")
    assert root / "train.jsonl" in HubSource(str(root)).files()


def test_hub_source_missing_split_and_column(tmp_path):
    root = hub_dir(tmp_path / "hub")
    with pytest.raises(DataError, match=r"no split 'dev' \(splits found: .*\): set data.source.splits.val"):
        HubSource(str(root), None, "translation.de", "translation.en", {"val": "dev"}).load()
    with pytest.raises(DataError, match=r"no column 'de' \(columns found: translation.de, translation.en\)"):
        HubSource(str(root), None, "de", "en").load()
    with pytest.raises(ConfigError, match="dev"):
        HubSource(str(root), splits={"dev": "validation"})


def test_hub_unreachable_suggests_local_data(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'wmt/wmt16' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(sources_module.datasets, "load_dataset", offline)
    with pytest.raises(DataError) as error:
        HubSource("wmt/wmt16", "de-en", "translation.de", "translation.en").load()
    message = str(error.value)
    assert "cannot reach the Hugging Face Hub" in message and "local directory" in message and "data=files" in message


# --- ReverseSource --------------------------------------------------------------------------------------------


def test_reverse_source_is_deterministic_and_reversed():
    source = ReverseSource(vocab_size=7, min_length=2, max_length=5, num_train=50, num_val=10, num_test=10, seed=3)
    data = source.load()
    assert {split: len(ds) for split, ds in data.items()} == {"train": 50, "val": 10, "test": 10}
    for s, t in pairs(data["train"]):
        tokens = s.split()
        assert (
            t.split() == tokens[::-1]
            and 2 <= len(tokens) <= 5
            and all(x in {f"t{i}" for i in range(7)} for x in tokens)
        )
    assert pairs(ReverseSource(7, 2, 5, 50, 10, 10, 3).load()["train"]) == pairs(data["train"])
    assert pairs(data["val"]) != pairs(data["test"])
    assert pairs(ReverseSource(7, 2, 5, 50, 10, 10, 4).load()["train"]) != pairs(data["train"])
    with pytest.raises(ConfigError, match="min_length"):
        ReverseSource(7, 5, 2, 50, 10, 10, 3)


# --- configs --------------------------------------------------------------------------------------------------


def data_config(name: str, tmp_path: Path, **updates):
    """``data=<name>`` composed by Hydra (as train.py does), with ``data_dir``, ``cache_dir`` and ``seed`` set."""
    overrides = [f"data={name}", f"paths.data_dir={DATA}/", f"paths.cache_dir={tmp_path}/cache/", "seed=7"]
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        root = compose("train", overrides=overrides + [f"{key}={value}" for key, value in updates.items()])
    return root.data


DATA_CONFIGS = ["multi30k", "tatoeba_ko_en", "chatbot_ko", "reverse", "files", "hub"]


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_every_data_config_instantiates(name, tmp_path):
    updates = {"data.train": str(tmp_path / "t.jsonl")} if name == "files" else {}
    updates |= {"data.source.name": str(hub_dir(tmp_path / "hub"))} if name == "hub" else {}
    cfg = data_config(name, tmp_path, **updates)
    datamodule = instantiate(cfg)
    assert isinstance(datamodule, Seq2SeqDataModule)
    assert datamodule.seed == 7 and datamodule.cache_dir == tmp_path / "cache"
    assert datamodule.source_lang == cfg.source_lang and datamodule.target_lang == cfg.target_lang


def test_data_configs_share_one_base(tmp_path):
    base = OmegaConf.load(CONF / "_base.yaml")
    assert sorted(path.stem for path in CONF.glob("*.yaml")) == sorted(["_base", *DATA_CONFIGS])
    # (tokenizer, vocab_size, min_freq, max_length, batch_size) as composed
    expected = {
        "multi30k": ("word", 10000, 2, 64, 128),
        "tatoeba_ko_en": ("bpe", 4000, 2, 64, 64),
        "chatbot_ko": ("char", 4000, 1, 100, 128),
        "reverse": ("word", 100, 1, 16, 128),
        "files": ("word", 10000, 2, 100, 128),
        "hub": ("word", 10000, 2, 100, 128),
    }
    for name in DATA_CONFIGS:
        own = OmegaConf.load(CONF / f"{name}.yaml")
        assert list(own.defaults) == ["_base", "_self_"], name
        repeated = [key for key in base if key in own and own[key] == base[key]]
        assert not repeated, f"{name}.yaml repeats the base values of {repeated}"
        cfg = data_config(name, tmp_path)
        assert set(base) <= set(cfg) and not cfg.lowercase and cfg.num_workers == 0 and cfg.pin_memory is None
        assert (cfg.tokenizer, cfg.vocab_size, cfg.min_freq, cfg.max_length, cfg.batch_size) == expected[name]
        assert cfg.seed == 7 and cfg.cache_dir == f"{tmp_path}/cache/"


def test_multi30k_config_loads_and_flips_direction(tmp_path):
    source = instantiate(
        data_config("multi30k", tmp_path, **{"data.source_lang": "en", "data.target_lang": "de"})
    ).source
    assert (source.source_lang, source.target_lang) == ("en", "de")
    assert pairs(source.load()["test"])[0][0].startswith("A man")


# --- the datamodule -------------------------------------------------------------------------------------------


def tiny_source(seed: int = 0) -> ReverseSource:
    return ReverseSource(vocab_size=9, min_length=1, max_length=8, num_train=300, num_val=37, num_test=29, seed=seed)


def tiny_datamodule(tmp_path: Path | None, **overrides) -> Seq2SeqDataModule:
    settings = {
        "source": tiny_source(),
        "source_lang": "tok",
        "target_lang": "tok",
        "tokenizer": "word",
        "vocab_size": 100,
        "min_freq": 1,
        "max_length": 20,
        "batch_size": 16,
        "seed": 1,
        "cache_dir": str(tmp_path / "cache") if tmp_path else None,
    }
    return Seq2SeqDataModule(**{**settings, **overrides})


def test_datamodule_batches(tmp_path):
    dm = tiny_datamodule(None)
    dm.prepare_data()
    dm.setup("fit")
    assert dm.src_vocab_size == dm.tgt_vocab_size == 4 + 9
    assert (dm.pad_id, dm.sos_id, dm.eos_id) == (PAD_ID, SOS_ID, EOS_ID)
    seen = 0
    for batch in dm.train_dataloader():
        bsz = batch.src.size(0)
        assert batch.src.shape[0] == batch.src_lengths.shape[0] == batch.tgt_in.shape[0] == bsz <= 16
        assert batch.tgt_in.shape == batch.tgt_out.shape
        assert (batch.tgt_in[:, 0] == SOS_ID).all()
        assert (batch.src_lengths >= 1).all() and batch.src.size(1) == batch.src_lengths.max()
        tgt_lengths = (batch.tgt_out != PAD_ID).sum(1)
        assert (batch.tgt_out.gather(1, (tgt_lengths - 1)[:, None]) == EOS_ID).all()
        assert (batch.src.gather(1, (batch.src_lengths - 1)[:, None]) == EOS_ID).all()
        for i in range(bsz):
            assert dm.decode_target(batch.tgt_out[i]) == batch.tgt_text[i]
            assert batch.tgt_text[i].split() == batch.src_text[i].split()[::-1]
        seen += bsz
    assert seen == 300
    assert sum(b.src.size(0) for b in dm.val_dataloader()) == 37
    assert sum(b.src.size(0) for b in dm.test_dataloader()) == 29
    # Batch.index is each pair's row in its split as read, so outputs can be put back in input order.
    raw_val = tiny_source().load()["val"]
    rows = [(int(i), s) for batch in dm.val_dataloader() for i, s in zip(batch.index, batch.src_text)]
    assert sorted(i for i, _ in rows) == list(range(37))
    assert all(raw_val[i]["source"] == source for i, source in rows)
    src, lengths = dm.source_tensors(["t1 t2", ""])
    assert src.tolist() == [dm.encode_source(["t1 t2"])[0], [EOS_ID, PAD_ID, PAD_ID]] and lengths.tolist() == [3, 1]


def test_datamodule_cache_second_setup_skips_tokenization(tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="seq2seq.data")
    first = tiny_datamodule(tmp_path)
    first.prepare_data()
    first.setup("fit")
    assert first.cache_hit is False and "wrote the cache" in caplog.text
    path = first.cache_path()
    assert path.parent == tmp_path / "cache" and (path / "meta.json").is_file()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary folders left

    def no_training(*args, **kwargs):
        raise AssertionError("tokenizers trained although the cache exists")

    monkeypatch.setattr(datamodule_module, "train_tokenizer", no_training)
    caplog.clear()
    second = tiny_datamodule(tmp_path)
    second.prepare_data()
    second.setup("fit")
    assert second.cache_hit is True and "loaded the tokenized data from the cache" in caplog.text
    assert second.cache_path() == path
    assert second.tokenizers_state() == first.tokenizers_state()
    assert second.dataset("val")["src_ids"][:] == first.dataset("val")["src_ids"][:]
    # another setting -> another cache folder
    assert tiny_datamodule(tmp_path, min_freq=2).cache_path() != path


def test_cache_write_race_and_damaged_cache(tmp_path, caplog):
    from seq2seq.data.cache import load_cached, save_cached

    dm = tiny_datamodule(None)
    dm.setup("fit")
    path = tmp_path / "cache" / "key"
    assert save_cached(dm._data, path, {"k": 1}) and save_cached(dm._data, path, {"k": 1})  # the loser discards
    assert [p.name for p in path.parent.iterdir()] == ["key"]
    assert load_cached(path).dropped == dm.dropped
    for file in (path / "dataset" / "train").glob("*.arrow"):
        file.write_bytes(b"broken")
    assert load_cached(path) is None and "ignoring unreadable cache" in caplog.text


def test_damaged_cache_is_rebuilt_and_replaced(tmp_path, caplog):
    first = tiny_datamodule(tmp_path)
    first.prepare_data()
    first.setup("fit")
    path = first.cache_path()
    for file in (path / "dataset" / "train").glob("*.arrow"):
        file.write_bytes(b"broken")
    second = tiny_datamodule(tmp_path)
    second.prepare_data()
    second.setup("fit")
    assert second.cache_hit is False and "ignoring unreadable cache" in caplog.text
    assert second.dataset("train")["src_ids"][:] == first.dataset("train")["src_ids"][:]
    third = tiny_datamodule(tmp_path)
    third.prepare_data()
    third.setup("fit")
    assert third.cache_hit is True  # the damaged folder was replaced
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary or damaged folders left


def test_cache_key_follows_file_changes(tmp_path):
    write(tmp_path / "d.src", "a b\nc d\ne f\n")
    write(tmp_path / "d.tgt", "A B\nC D\nE F\n")
    dm = tiny_datamodule(tmp_path, source=FileSource(str(tmp_path / "d")))
    before = dm.cache_path()
    write(tmp_path / "d.tgt", "A B\nC D\nE F G\n")
    assert dm.cache_path() != before


def test_given_tokenizers_are_reused(tmp_path, monkeypatch):
    trained = tiny_datamodule(None)
    trained.setup("fit")
    state = trained.tokenizers_state()

    def no_training(*args, **kwargs):
        raise AssertionError("tokenizers were retrained")

    monkeypatch.setattr(datamodule_module, "train_tokenizer", no_training)
    # other data (another seed): the tokenizers must still be the given ones
    reused = tiny_datamodule(tmp_path, source=tiny_source(seed=5), tokenizers=state, vocab_size=5)
    assert reused.tgt_vocab_size == trained.tgt_vocab_size  # usable before setup (translation)
    reused.setup("test")
    assert reused.tokenizers_state() == state
    assert reused.encode_source(["t3 t1"]) == trained.encode_source(["t3 t1"])
    reused.save_tokenizers(tmp_path / "out")
    assert json.loads((tmp_path / "out" / "tokenizer.target.json").read_text()) == json.loads(state["target"])
    assert (tmp_path / "out" / "tokenizer.source.json").is_file()


def test_max_length_filters_train_only_and_truncates_eval_sources(caplog):
    caplog.set_level(logging.INFO, logger="seq2seq.data")
    raw = tiny_source().load()
    long = {split: sum(len(s.split()) > 5 for s in ds["source"]) for split, ds in raw.items()}
    assert all(long.values())
    dm = tiny_datamodule(None, max_length=5)
    dm.setup("fit")
    # train: pairs with a side over max_length are dropped, and counted
    assert dm.dropped == {"too_long": long["train"], "empty": 0}
    assert len(dm.dataset("train")) == 300 - long["train"] and max(dm.dataset("train")["src_len"][:]) <= 5
    assert f"train: dropped {long['train']} of 300 pairs longer than max_length=5" in caplog.text
    # val/test: every pair kept, 1:1 with the input, text untouched; long sources truncated, targets whole
    assert dm.truncated == {"val": long["val"], "test": long["test"]}
    for split in ("val", "test"):
        encoded = dm.dataset(split)
        assert encoded["index"][:] == list(range(len(raw[split])))
        assert pairs(encoded) == pairs(raw[split])
        full_src = encode_batch(dm.src_tokenizer, raw[split]["source"][:])
        assert encoded["src_ids"][:] == [ids[:5] for ids in full_src]
        assert encoded["tgt_ids"][:] == encode_batch(dm.tgt_tokenizer, raw[split]["target"][:])
        assert max(encoded["tgt_len"][:]) > 5
        message = (
            f"{split}: {long[split]} of {len(raw[split])} sources longer than max_length=5 tokens are truncated "
            "for decoding; references are scored in full"
        )
        assert message in caplog.text
    batches = list(dm.test_dataloader())
    assert sum(b.src.size(0) for b in batches) == 29 and max(b.src.size(1) for b in batches) == 5 + 1  # + <eos>
    assert max(b.tgt_out.size(1) for b in batches) > 5 + 1
    # only train can be "too long": val/test are never emptied
    with pytest.raises(DataError, match=r"every train pair is longer than data.max_length=3 tokens"):
        tiny_datamodule(None, source=ReverseSource(5, 4, 6, 10, 2, 2, 0), max_length=3).setup("fit")


def test_train_drops_pairs_empty_on_both_sides(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="seq2seq.data")
    write(tmp_path / "train.src", "a b\n\nc d\n\ne\n")
    write(tmp_path / "train.tgt", "b a\n\nd c\nx\n\n")
    for split in ("val", "test"):
        write(tmp_path / f"{split}.src", "a\n\n")
        write(tmp_path / f"{split}.tgt", "a\n\n")
    prefixes = [str(tmp_path / split) for split in ("train", "val", "test")]
    dm = tiny_datamodule(None, source=FileSource(*prefixes))
    dm.setup("fit")
    assert dm.dropped == {"too_long": 0, "empty": 1}
    train = dm.dataset("train")
    assert pairs(train) == [("a b", "b a"), ("c d", "d c"), ("", "x"), ("e", "")]  # one empty side is kept
    assert train["index"][:] == [0, 2, 3, 4]
    assert "train: dropped 1 of 5 pairs empty on both sides" in caplog.text
    assert all(pairs(dm.dataset(split)) == [("a", "a"), ("", "")] for split in ("val", "test"))
    write(tmp_path / "train.src", "\n\n")
    write(tmp_path / "train.tgt", "\n\n")
    with pytest.raises(DataError, match=r"every train pair is empty"):
        tiny_datamodule(None, source=FileSource(*prefixes)).setup("fit")


def test_eval_encodes_only_the_split_it_evaluates(tmp_path, monkeypatch):
    import eval as eval_entry
    import seq2seq.data.encoding as encoding_module

    sizes = {"data.source.num_train": 200, "data.source.num_val": 11, "data.source.num_test": 13}
    data = OmegaConf.to_container(data_config("reverse", tmp_path, **sizes), resolve=True)  # as a checkpoint has it
    trained = instantiate(data)
    trained.setup("fit")
    raw = trained.source.load()
    tokenized: list[str] = []

    def spy(tokenizer, texts):
        tokenized.extend(texts)
        return real_encode_batch(tokenizer, texts)

    real_encode_batch = encoding_module.encode_batch
    monkeypatch.setattr(encoding_module, "encode_batch", spy)
    dm = eval_entry.eval_datamodule(data, trained.tokenizers_state(), "test")
    dm.prepare_data()
    dm.setup("test")
    assert sorted(tokenized) == sorted(raw["test"]["source"][:] + raw["test"]["target"][:])  # test only
    assert sum(b.src.size(0) for b in dm.test_dataloader()) == 13
    assert dm.dataset("test")["src_ids"][:] == trained.dataset("test")["src_ids"][:]
    with pytest.raises(RuntimeError, match="not encoded"):
        dm.dataset("train")
    assert eval_entry.eval_datamodule(data, trained.tokenizers_state(), "val").cache_path() != dm.cache_path()
    tokenized.clear()
    again = eval_entry.eval_datamodule(data, trained.tokenizers_state(), "test")
    again.setup("test")
    assert again.cache_hit is True and tokenized == []


def test_ddp_ranks_get_equal_train_and_disjoint_eval_batches():
    dm = tiny_datamodule(None, batch_size=8)
    dm.setup("fit")
    train, val = [], []
    for rank in range(3):
        cpu = SimpleNamespace(root_device=SimpleNamespace(type="cpu"))
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=3, current_epoch=2, strategy=cpu)
        train.append([b.src.size(0) for b in dm.train_dataloader()])
        val.append([t for b in dm.val_dataloader() for t in b.src_text])
    assert len({len(batches) for batches in train}) == 1
    flat = [t for shard in val for t in shard]
    assert sorted(flat) == sorted(dm.dataset("val")["source"][:])


def test_workers_and_unknown_settings(tmp_path):
    dm = tiny_datamodule(None, num_workers=1)
    dm.setup("fit")
    loader = dm.val_dataloader()
    assert loader.persistent_workers and sum(b.src.size(0) for b in loader) == 37
    assert not loader.pin_memory  # pin_memory=None pins only when training on a CUDA device
    assert tiny_datamodule(None, pin_memory=True)._pin_memory()
    with pytest.raises(ConfigError, match="word, bpe, char"):
        tiny_datamodule(None, tokenizer="spm")
    with pytest.raises(RuntimeError, match="setup"):
        tiny_datamodule(None).src_tokenizer  # noqa: B018


def test_lightning_fit_uses_the_dataloaders():
    import lightning as L
    import torch

    from seq2seq.data.batching import Batch

    class Probe(L.LightningModule):
        def __init__(self, vocab_size: int) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab_size, 4)
            self.output = torch.nn.Linear(4, vocab_size)
            self.epochs: list[int] = []
            self.val_seen = 0

        def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
            assert isinstance(batch, Batch)
            if batch_idx == 0:
                self.epochs.append(self.trainer.train_dataloader.batch_sampler.epoch)
            logits = self.output(self.embedding(batch.tgt_in))  # (B, T, V)
            return torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID)

        def validation_step(self, batch: Batch, batch_idx: int) -> None:
            self.val_seen += len(batch.tgt_text)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = tiny_datamodule(None, batch_size=32)
    dm.setup("fit")
    probe = Probe(dm.tgt_vocab_size)
    trainer = L.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        accelerator="cpu",
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(probe, datamodule=dm)
    assert probe.epochs == [0, 1]  # a new batch order every epoch
    assert probe.val_seen == 2 * 37  # every val pair once per epoch


def test_batch_to_copies_non_blocking_and_keeps_lengths_on_the_cpu():
    import torch
    from lightning_fabric.utilities.apply_func import move_data_to_device

    from seq2seq.data.batching import Batch

    copies: list[dict] = []

    class Recorded(torch.Tensor):
        """A tensor that records how it is copied (CI has no GPU to copy to)."""

        def to(self, *args, **kwargs):
            copies.append({"args": args, **kwargs})
            return self

    def tensor(*values: int) -> torch.Tensor:
        return torch.tensor([values]).as_subclass(Recorded)

    lengths, index = torch.tensor([2]), torch.tensor([0])
    batch = Batch(tensor(5, 3), lengths, tensor(2, 6), tensor(6, 3), ["a"], ["b"], index)
    # Lightning's transfer passes non_blocking to plain tensors only, so Batch.to must ask for it itself
    moved = move_data_to_device(batch, torch.device("cuda", 0))
    assert len(copies) == 3 and all(copy["non_blocking"] is True for copy in copies)
    assert moved.src_lengths is lengths and moved.index is index
    copies.clear()
    batch.to("cpu")  # to the host: a blocking copy, so the values are there when read
    assert len(copies) == 3 and not any(copy["non_blocking"] for copy in copies)


def test_data_config_and_checkpoint_targets_still_resolve():
    """conf/data/*.yaml, and the checkpoints that stored them, name sources by their path in seq2seq.data.sources:
    splitting the module by concern must keep every one of them importable there."""
    from hydra.utils import get_object

    targets = set()
    for path in CONF.glob("*.yaml"):
        config = OmegaConf.load(path)
        source = config.get("source")
        targets |= {config.get("_target_"), source.get("_target_") if source else None} - {None}
    stored = {f"seq2seq.data.sources.{name}" for name in sources_module.__all__ if name != "PairSource"}
    assert {t for t in targets if ".sources." in t} <= stored
    for target in targets | stored:
        assert isinstance(get_object(target), type), target
