"""Bad input ends with one readable line, exit code 2, and leaves earlier runs alone."""

from __future__ import annotations

import gzip
import re

import pytest
from conftest import ROOT, run_cli, run_dirs

FAST = ["trainer=cpu", "debug=fast", "logger=csv", "model.hidden_size=8", "model.embedding_dim=8"]


def assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


@pytest.fixture
def files(tmp_path):
    """Helpers writing user data files into tmp_path."""

    def write(name: str, text: str | bytes) -> str:
        path = tmp_path / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return str(path)

    return write


def train_on_files(tmp_path, *overrides: str, check: bool = False):
    """Run train.py with data=files on de/en files or tables in tmp_path."""
    return run_cli(
        "train",
        "data=files",
        "data.source_lang=de",
        "data.target_lang=en",
        *overrides,
        *FAST,
        log_dir=tmp_path / "logs",
        check=check,
    )


def test_misaligned_text_files_name_both_counts(files, tmp_path):
    files("train.de", "a\nb\nc\n")
    files("train.en", "x\ny\n")
    result = train_on_files(tmp_path, f"data.train={tmp_path}/train")
    assert_one_line_error(result, "3", "2", "train.de", "train.en")


def test_empty_split(files, tmp_path):
    files("train.jsonl", '{"source": "a b", "target": "b a"}\n' * 5)
    files("val.jsonl", "")
    result = train_on_files(tmp_path, f"data.train={tmp_path}/train.jsonl", f"data.val={tmp_path}/val.jsonl")
    assert_one_line_error(result, "val", "empty")


def test_missing_file(tmp_path):
    result = train_on_files(tmp_path, f"data.train={tmp_path}/nothing.jsonl")
    assert_one_line_error(result, "nothing.jsonl", "data.train")


def test_missing_column(files, tmp_path):
    files("train.csv", "question,answer\nhi,hello\n")
    result = train_on_files(tmp_path, f"data.train={tmp_path}/train.csv")
    assert_one_line_error(result, "source", "question")


def test_csv_row_with_a_missing_field_names_the_line(files, tmp_path):
    files("train.csv", "source,target\na b,b a\nc d\n" + "e f,f e\n" * 40)  # a missing comma on line 3
    result = train_on_files(tmp_path, f"data.train={tmp_path}/train.csv")
    assert_one_line_error(result, "train.csv", "line 3 has 1 field, the header has 2")


def test_file_that_is_not_utf8(files, tmp_path):
    files("train.de", b"gut\n" + "schön\n".encode("latin-1"))
    files("train.en", "good\nnice\n")
    result = train_on_files(tmp_path, f"data.train={tmp_path}/train")
    assert_one_line_error(result, "UTF-8", "train.de")


def test_gzip_text_files_are_read(tmp_path):
    for lang, lines in (("de", "ein hund\nzwei katzen\n"), ("en", "a dog\ntwo cats\n")):
        with gzip.open(tmp_path / f"train.{lang}.gz", "wt") as file:
            file.write(lines * 20)
    run_cli(
        "train",
        "data=files",
        f"data.train={tmp_path}/train",
        "data.source_lang=de",
        "data.target_lang=en",
        "data.min_freq=1",
        "test=false",
        *FAST,
        log_dir=tmp_path / "logs",
    )
    assert (run_dirs(tmp_path / "logs", "train")[0] / "metrics.json").is_file()


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("model.cell=transformer", "unknown cell type 'transformer'"),
        ("data.tokenizer=sentencepiece", "tokenizer"),
        ("teacher_forcing.mode=fast", "unknown teacher_forcing.mode 'fast'"),
    ],
)
def test_unknown_config_values(override, fragment, tmp_path):
    result = run_cli("train", "experiment=reverse", override, *FAST, log_dir=tmp_path, check=False)
    assert_one_line_error(result, fragment)


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["attention=luong", "attention.score=cosine"], ["unknown attention.score 'cosine'", "dot, general or concat"]),
        (
            ["attention=luong", "attention.score=dot", "model.bidirectional=true", "model.decoder_hidden_size=8"],
            ["decoder hidden size (8)", "encoder output size (16", "model.decoder_hidden_size=16"],
        ),
    ],
)
def test_bad_attention_settings(overrides, fragments, tmp_path):
    result = run_cli("train", "experiment=reverse", *overrides, *FAST, log_dir=tmp_path, check=False)
    assert_one_line_error(result, *fragments)


@pytest.mark.parametrize("group", ["model", "attention", "teacher_forcing", "data"])
def test_unknown_group_option_lists_the_choices(group, tmp_path):
    result = run_cli("train", f"{group}=nonsense", log_dir=tmp_path, check=False)
    assert result.returncode != 0
    assert f"Could not find '{group}/nonsense'" in result.stderr
    assert "Available options" in result.stderr and "Traceback" not in result.stderr


def test_required_value_not_given(tmp_path):
    result = run_cli("train", "data=files", *FAST, log_dir=tmp_path, check=False)
    assert_one_line_error(result, "data.train is not set")


def test_checkpoint_path_that_does_not_exist(tmp_path):
    result = run_cli("eval", f"ckpt_path={tmp_path}/missing.ckpt", log_dir=tmp_path, check=False)
    assert_one_line_error(result, "missing.ckpt", "does not exist")


def test_file_that_is_not_a_checkpoint(files, tmp_path):
    bogus = files("bogus.ckpt", b"\x00not a checkpoint")
    for script in ("eval", "train", "translate"):
        result = run_cli(
            script, f"ckpt_path={bogus}", *(FAST if script == "train" else []), log_dir=tmp_path, check=False
        )
        assert_one_line_error(result, "bogus.ckpt", "not a checkpoint of this project")


def test_eval_data_of_another_language_pair_leaves_the_run_alone(reverse_run, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in reverse_run.rglob("*") if p.is_file()}
    result = run_cli(
        "eval", f"ckpt_path={reverse_run}/checkpoints/best.ckpt", "data=multi30k", log_dir=tmp_path, check=False
    )
    assert_one_line_error(result, "de→en", "tok→tok")
    after = {p: p.stat().st_mtime_ns for p in reverse_run.rglob("*") if p.is_file()}
    assert before == after


# --- hyperparameters: checked against one table before any data is read -------------------------------------------


@pytest.mark.parametrize(
    "overrides,fragments",
    [
        (["optimizer.lr=abc"], ["optimizer.lr='abc'", "a number > 0"]),
        (["model.dropout=1.5"], ["model.dropout=1.5", "[0, 1)"]),
        (["model.hidden_size=-5"], ["model.hidden_size=-5", "an integer >= 1"]),
        (["callbacks.ema.decay=1.5"], ["callbacks.ema.decay=1.5", "null or a number in (0, 1)"]),
    ],
)
def test_bad_hyperparameters_fail_before_the_data_is_read(overrides, fragments, tmp_path):
    cache = tmp_path / "cache"
    result = run_cli("train", *FAST, f"data.cache_dir={cache}", *overrides, log_dir=tmp_path, check=False)
    assert_one_line_error(result, *fragments)
    assert not cache.exists()  # the data would be prepared (and cached) first


@pytest.mark.parametrize(
    "override,fragments",
    [
        ("optimizer.weight_decay=-0.1", ["optimizer.weight_decay=-0.1", ">= 0"]),
        ("model.embedding_dim=2.5", ["model.embedding_dim=2.5", "an integer >= 1"]),
        ("model.num_layers=0", ["model.num_layers=0", "an integer >= 1"]),
        ("model.decoder_hidden_size=0", ["model.decoder_hidden_size=0", "null or an integer >= 1"]),
        ("data.batch_size=0", ["data.batch_size=0"]),
        ("data.max_length=-1", ["data.max_length=-1"]),
        ("data.vocab_size=big", ["data.vocab_size='big'"]),
        ("trainer.max_epochs=0", ["trainer.max_epochs=0", "-1 for no limit"]),
        ("trainer.gradient_clip_val=-1", ["trainer.gradient_clip_val=-1", "null or a number >= 0"]),
        ("model.dropout=true", ["model.dropout=True", "[0, 1)"]),
        ("teacher_forcing.ratio=1.2", ["teacher_forcing.ratio=1.2", "[0, 1]"]),
        ("decoding=beam decoding.beam_size=0", ["decoding.beam_size=0", "an integer >= 1"]),
        ("scheduler=inverse_sqrt scheduler.warmup_steps=-1", ["scheduler.warmup_steps=-1", "an integer >= 0"]),
        ("callbacks.early_stopping.patience=0", ["callbacks.early_stopping.patience=0", "null or an integer >= 1"]),
        ("callbacks.early_stopping.patience=true", ["callbacks.early_stopping.patience=True"]),
        ("callbacks.ema.decay=1", ["callbacks.ema.decay=1", "null or a number in (0, 1)"]),
    ],
)
def test_hyperparameter_table(override, fragments):
    from hydra import compose, initialize_config_dir

    from seq2seq.config_checks import check_hyperparameters
    from seq2seq.errors import ConfigError

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train.yaml", overrides=override.split())
    with pytest.raises(ConfigError) as error:
        check_hyperparameters(cfg)
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        (["decoding=beam", "decoding.nbest=9"], "decoding.nbest must be between 1 and decoding.beam_size (5)"),
        (["teacher_forcing=exponential", "teacher_forcing.decay=1.5"], "teacher_forcing.decay must be in (0, 1)"),
        (["scheduler=plateau", "scheduler.factor=2"], "scheduler.factor=2"),
        (["scheduler=exponential", "scheduler.interval=batch"], "scheduler.interval='batch'"),
        (["experiment=reverse", "scheduler=cosine"], "scheduler.gamma is not an option"),
        (["model.tie_embeddings=all", "data.joint_vocab=false"], "model.tie_embeddings=all shares one embedding"),
        (["model.tie_embeddings=both"], "unknown model.tie_embeddings='both'"),
        (["model.pretrained_embeddings.source=/no/such/vectors.txt"], "/no/such/vectors.txt does not exist"),
    ],
)
def test_checks_across_keys_run_before_the_data_too(overrides, fragment):
    from hydra import compose, initialize_config_dir

    from seq2seq.config_checks import check_hyperparameters
    from seq2seq.errors import ConfigError

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train.yaml", overrides=overrides)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        check_hyperparameters(cfg)


def test_default_and_recipe_configs_pass_the_checks():
    from hydra import compose, initialize_config_dir

    from seq2seq.config_checks import check_hyperparameters

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        for overrides in ([], ["experiment=reverse"], ["experiment=multi30k_bahdanau"], ["experiment=multi30k_luong"]):
            for option in ("none", "plateau", "exponential", "cosine", "inverse_sqrt", "linear"):
                if overrides and option != "none" and overrides[0] == "experiment=reverse":
                    continue  # the reverse recipe sets the exponential's gamma
                check_hyperparameters(compose("train.yaml", overrides=[*overrides, f"scheduler={option}"]))


def test_checkpoint_cut_short_is_called_damaged_with_a_way_out(reverse_run, tmp_path):
    whole = (reverse_run / "checkpoints" / "last.ckpt").read_bytes()
    cut = tmp_path / "last.ckpt"
    cut.write_bytes(whole[: len(whole) // 2])  # a copy or a save interrupted halfway
    result = run_cli("eval", f"ckpt_path={cut}", log_dir=tmp_path, check=False)
    assert_one_line_error(result, "last.ckpt", "damaged or incomplete", "best.ckpt")
