"""Bahdanau and Luong attention: distributions, all-steps vs step-by-step, beam search, learning, heatmaps."""

import itertools

import pytest
import torch
from conftest import TINY_JOB, read_metrics, run_cli, run_dirs, translate
from matplotlib.image import imread

from seq2seq.decoding import BeamSearch, GreedySearch, SampleSearch
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq
from seq2seq.modules.attention import Attention
from seq2seq.plotting import plot_attention, save_figure

PAD, SOS, EOS = 0, 2, 3
V_SRC, V_TGT = 13, 11

ATTENTIONS = {
    "bahdanau": {"kind": "bahdanau"},
    "luong-dot": {"kind": "luong", "score": "dot", "input_feeding": False},
    "luong-general-feed": {"kind": "luong", "score": "general", "input_feeding": True},
    "luong-concat": {"kind": "luong", "score": "concat", "input_feeding": False},
}


def make_model(attention, cell="gru", bidirectional=True, num_layers=1, seed=0):
    torch.manual_seed(seed)
    model = Seq2Seq(
        V_SRC,
        V_TGT,
        cell=cell,
        embedding_dim=8,
        hidden_size=6,
        num_layers=num_layers,
        bidirectional=bidirectional,
        attention=attention,
    )
    return model.eval()


def make_batch(batch=5, src_len=7, tgt_len=6, seed=0):
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([src_len, 6, 4, 2, 1][:batch])
    src = torch.randint(4, V_SRC, (batch, src_len), generator=gen)
    src[torch.arange(src_len)[None, :] >= lengths[:, None]] = PAD
    tgt_in = torch.randint(4, V_TGT, (batch, tgt_len), generator=gen)
    tgt_in[:, 0] = SOS
    return src, lengths, tgt_in


def assert_distribution_over_real_positions(weights, src_mask):
    """weights (B, T, S): >= 0, sum to 1 over real positions, exactly 0 on padding."""
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
    assert (weights.masked_select(~src_mask[:, None, :].expand_as(weights)) == 0).all()


CASES = list(itertools.product(ATTENTIONS, ["rnn", "lstm", "gru"], [False, True], [1, 2]))


@pytest.mark.parametrize("name,cell,bidirectional,num_layers", CASES)
def test_weights_are_a_distribution_over_the_real_source_positions(name, cell, bidirectional, num_layers):
    model = make_model(ATTENTIONS[name], cell, bidirectional, num_layers)
    src, lengths, tgt_in = make_batch()
    logits, weights = model.teacher_forced(src, lengths, tgt_in)
    assert logits.shape == (5, 6, V_TGT) and weights.shape == (5, 6, 7)
    assert_distribution_over_real_positions(weights, src != PAD)
    for search in (GreedySearch(max_length=5), SampleSearch(top_k=3, max_length=5)):
        hypotheses = search(model, src, lengths, SOS, EOS, PAD)
        assert hypotheses.attention.shape == (*hypotheses.tokens.shape, 7)
        assert_distribution_over_real_positions(hypotheses.attention, src != PAD)


@pytest.mark.parametrize("name,cell", list(itertools.product(ATTENTIONS, ["lstm", "gru"])))
def test_all_steps_at_once_equal_step_by_step(name, cell):
    model = make_model(ATTENTIONS[name], cell, num_layers=2)
    src, lengths, tgt_in = make_batch()
    logits, weights = model.teacher_forced(src, lengths, tgt_in)
    encoded = model.encode(src, lengths)
    state, step_logits, step_weights = encoded.state, [], []
    for t in range(tgt_in.size(1)):
        logits_t, state, weights_t = model.decode_step(tgt_in[:, t], state, encoded)
        step_logits.append(logits_t)
        step_weights.append(weights_t)
    torch.testing.assert_close(torch.stack(step_logits, 1), logits)
    torch.testing.assert_close(torch.stack(step_weights, 1), weights)


@pytest.mark.parametrize("score", ["additive", "dot", "general", "concat"])
def test_attention_of_many_queries_is_the_attention_of_each(score):
    torch.manual_seed(0)
    attention = Attention(score, query_size=6, memory_size=6)
    memory, query = torch.randn(3, 5, 6), torch.randn(3, 4, 6)
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2, [True] + [False] * 4])
    keys = attention.prepare(memory)
    context, weights = attention(query, keys, memory, mask)
    for t in range(4):
        context_t, weights_t = attention(query[:, t : t + 1], keys, memory, mask)
        torch.testing.assert_close(context_t[:, 0], context[:, t])
        torch.testing.assert_close(weights_t[:, 0], weights[:, t])


@pytest.mark.parametrize("name", list(ATTENTIONS))
def test_beam_attention_equals_teacher_forcing_its_best_hypothesis(name):
    model = make_model(ATTENTIONS[name], "lstm")
    src, lengths, _ = make_batch()
    found = BeamSearch(beam_size=4, max_length=8)(model, src, lengths, SOS, EOS, PAD)
    for i in range(src.size(0)):
        tokens = found.tokens[i].tolist()
        n = tokens.index(EOS) + 1 if EOS in tokens else len(tokens)
        tgt_in = torch.tensor([[SOS, *tokens[: n - 1]]])
        _, weights = model.teacher_forced(src[i : i + 1, : lengths[i]], lengths[i : i + 1], tgt_in)
        torch.testing.assert_close(found.attention[i, :n, : lengths[i]], weights[0])
        assert (found.attention[i, :n, lengths[i] :] == 0).all()


def test_parallel_teacher_forcing_mixes_gold_with_the_teacher_forced_argmax():
    model = make_model(ATTENTIONS["luong-dot"])
    src, lengths, tgt_in = make_batch()
    teacher_forced, _ = model.teacher_forced(src, lengths, tgt_in)
    predicted = torch.cat([tgt_in[:, :1], teacher_forced[:, :-1].argmax(-1)], dim=1)
    # ratio 0: every input after <sos> is the first pass's prediction
    torch.testing.assert_close(
        model(src, lengths, tgt_in, tf_ratio=0.0, tf_mode="parallel"), model.teacher_forced(src, lengths, predicted)[0]
    )
    torch.testing.assert_close(model(src, lengths, tgt_in, tf_ratio=1.0, tf_mode="parallel"), teacher_forced)


@pytest.mark.parametrize(
    "attention,fragment",
    [
        ({"kind": "luong", "score": "cosine"}, "unknown attention.score 'cosine'"),
        ({"kind": "transformer"}, "unknown attention 'transformer'"),
        ({"kind": "bahdanau", "score": "dot"}, "attention=bahdanau has no option score"),
    ],
)
def test_bad_attention_options(attention, fragment):
    with pytest.raises(ConfigError, match=fragment):
        make_model(attention)


def test_dot_score_names_the_sizes_and_the_fix():
    with pytest.raises(
        ConfigError, match=r"decoder hidden size \(6\).*encoder output size \(12.*decoder_hidden_size=12"
    ):
        Seq2Seq(
            V_SRC, V_TGT, hidden_size=6, bidirectional=True, decoder_hidden_size=6, attention=ATTENTIONS["luong-dot"]
        )


def test_heatmap_is_a_valid_png_of_the_figure_size(tmp_path):
    weights = torch.softmax(torch.randn(4, 6), -1)
    figure = plot_attention(weights, [f"s{i}" for i in range(6)], [f"t{i}" for i in range(4)], title="x")
    width, height = (figure.get_size_inches() * figure.dpi).round().astype(int)
    image = imread(save_figure(figure, tmp_path / "plots" / "a.png"))
    assert image.shape[:2] == (height, width) and image.shape[2] in (3, 4)
    assert image[..., :3].std() > 0.05  # not a blank canvas


# Reversing sequences of 15-30 tokens: the final state alone cannot carry them, attention can.
LONG_REVERSE = [
    "data=reverse",
    "trainer=cpu",
    "logger=csv",
    "data.source.min_length=15",
    "data.source.max_length=30",
    "data.max_length=32",
    "data.source.num_train=4000",
    "data.source.num_val=200",
    "data.source.num_test=100",
    "data.batch_size=32",
    "model.embedding_dim=32",
    "model.hidden_size=64",
    "model.dropout=0",
    "optimizer.lr=0.005",
    "trainer.max_epochs=6",
    "decoding.max_length=40",
    "trainer.enable_progress_bar=false",
    "test=false",
]


def train_with_and_without_attention(tmp_path_factory, overrides: list[str]) -> dict:
    """The same CPU budget with and without attention: {name: run dir}."""
    runs = {}
    for name, attention in {
        "none": ["attention=none"],
        "luong": ["attention=luong", "attention.input_feeding=false"],
    }.items():
        log_dir = tmp_path_factory.mktemp(name)
        run_cli("train", *overrides, *attention, f"data.cache_dir={log_dir}/cache", log_dir=log_dir)
        (runs[name],) = run_dirs(log_dir, "train")
    return runs


@pytest.fixture(scope="module")
def long_reverse(tmp_path_factory):
    """Six epochs of long reversal with and without attention (a few minutes: the slow test's)."""
    return train_with_and_without_attention(tmp_path_factory, LONG_REVERSE)


@pytest.fixture(scope="module")
def tiny_attention_runs(tmp_path_factory):
    """Two epochs of the tiny reverse job with and without attention (seconds: for the plotting tests)."""
    return train_with_and_without_attention(tmp_path_factory, [*TINY_JOB, "trainer.max_epochs=2", "test=false"])


@pytest.mark.slow
def test_attention_learns_long_reversal_that_the_context_vector_cannot(long_reverse):
    with_attention = read_metrics(long_reverse["luong"])["val/exact_match"]
    without = read_metrics(long_reverse["none"])["val/exact_match"]
    assert with_attention >= 0.25 and with_attention >= without + 0.2, (with_attention, without)


def test_training_draws_heatmaps_only_with_attention(tiny_attention_runs):
    plots = sorted(p.name for p in (tiny_attention_runs["luong"] / "plots").glob("*.png"))
    assert "epoch000_example0.png" in plots and "final_example2.png" in plots
    assert len(plots) == 3 * 3  # 3 examples × (2 epochs + the final validation)
    assert not (tiny_attention_runs["none"] / "plots").exists()


def test_translate_plots_one_heatmap_per_input_line(tiny_attention_runs, tmp_path):
    checkpoint = tiny_attention_runs["luong"] / "checkpoints" / "best.ckpt"
    lines = "t1 t2 t3 t4 t5 t6 t7 t8 t9 t10 t11 t12 t13 t14 t15\n\nt5 t6 t7\n"
    result = translate(checkpoint, lines, f"+plot_attention={tmp_path}/maps", "decoding=beam")
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 3
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == ["line00001.png", "line00003.png"]
    # a checkpoint without attention has nothing to plot: one line
    result = translate(
        tiny_attention_runs["none"] / "checkpoints" / "best.ckpt", "t1 t2\n", f"+plot_attention={tmp_path}/x"
    )
    assert result.returncode == 2 and "attention=none" in result.stderr and "Traceback" not in result.stderr
