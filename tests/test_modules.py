"""Encoder, context (bridge), decoder and the whole model: shapes, fused vs stepped paths, learning."""

import itertools

import pytest
import torch

from seq2seq.decoding import GreedySearch
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq
from seq2seq.modules.context import Bridge

PAD, SOS, EOS = 0, 2, 3
V_SRC, V_TGT = 13, 11


def make_batch(batch=4, src_len=7, tgt_len=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(4, V_SRC, (batch, src_len), generator=gen)
    src_lengths = torch.tensor([src_len] + [max(1, src_len - i) for i in range(1, batch)])
    for i, n in enumerate(src_lengths):
        src[i, n:] = PAD
    tgt_in = torch.randint(4, V_TGT, (batch, tgt_len), generator=gen)
    tgt_in[:, 0] = SOS
    return src, src_lengths, tgt_in


@pytest.mark.parametrize(
    "cell,bidirectional,num_layers", list(itertools.product(["rnn", "lstm", "gru"], [False, True], [1, 2]))
)
def test_every_cell_trains_a_step_and_decodes(cell, bidirectional, num_layers):
    torch.manual_seed(0)
    model = Seq2Seq(
        V_SRC,
        V_TGT,
        cell=cell,
        embedding_dim=8,
        hidden_size=6,
        num_layers=num_layers,
        bidirectional=bidirectional,
        dropout=0.1,
    )
    src, src_lengths, tgt_in = make_batch()
    tgt_out = torch.roll(tgt_in, -1, dims=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    logits = model(src, src_lengths, tgt_in)
    assert logits.shape == (4, 5, V_TGT)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten()).backward()
    optimizer.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, model.parameters()) if p.grad is not None)

    model.eval()
    encoded = model.encode(src, src_lengths)
    assert encoded.memory.shape == (4, 7, 6 * (2 if bidirectional else 1))
    assert torch.equal(encoded.src_mask, src != PAD)
    hyps = GreedySearch(max_length=6)(model, src, src_lengths, SOS, EOS, PAD)
    assert hyps.tokens.shape[0] == 4 and 1 <= hyps.tokens.shape[1] <= 6
    assert hyps.scores.shape == (4,) and (hyps.scores <= 0).all()


def test_encoder_ignores_padding():
    torch.manual_seed(0)
    model = Seq2Seq(V_SRC, V_TGT, cell="lstm", embedding_dim=8, hidden_size=6, bidirectional=True).eval()
    src, src_lengths, tgt_in = make_batch(batch=2, src_len=5)
    src_lengths = torch.tensor([5, 3])
    src[1, 3:] = PAD
    padded = torch.cat([src, torch.full((2, 4), PAD)], dim=1)
    a = model(src, src_lengths, tgt_in)
    b = model(padded, src_lengths, tgt_in)
    torch.testing.assert_close(a, b)
    alone = model(src[1:, :3], src_lengths[1:], tgt_in[1:])
    torch.testing.assert_close(a[1:], alone)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize(
    "enc_layers,dec_layers,hidden,dec_hidden,bidirectional",
    [(1, 2, 6, 6, False), (3, 1, 6, 6, False), (2, 2, 6, 10, True), (2, 3, 4, 5, True)],
)
def test_bridge_maps_depth_and_size(cell, enc_layers, dec_layers, hidden, dec_hidden, bidirectional):
    torch.manual_seed(0)
    model = Seq2Seq(
        V_SRC,
        V_TGT,
        cell=cell,
        embedding_dim=8,
        hidden_size=hidden,
        num_layers=enc_layers,
        bidirectional=bidirectional,
        decoder_hidden_size=dec_hidden,
        decoder_num_layers=dec_layers,
    )
    src, src_lengths, tgt_in = make_batch()
    state = model.encode(src, src_lengths).state.rnn
    for part in state if cell == "lstm" else (state,):
        assert part.shape == (dec_layers, 4, dec_hidden)
    assert model(src, src_lengths, tgt_in).shape == (4, 5, V_TGT)


def test_copy_bridge_joins_directions_and_aligns_layers_from_the_top():
    bridge = Bridge(
        "copy", "gru", 3, encoder_num_layers=2, encoder_directions=2, decoder_hidden_size=6, decoder_num_layers=1
    )
    state = torch.arange(4 * 2 * 3, dtype=torch.float).view(4, 2, 3)  # (layers·dirs, B, H)
    out = bridge(state)
    # top layer = rows 2 (forward) and 3 (backward), side by side
    torch.testing.assert_close(out[0], torch.cat([state[2], state[3]], dim=-1))


def test_copy_bridge_rejects_mismatched_sizes():
    with pytest.raises(ConfigError, match="bridge=copy"):
        Seq2Seq(V_SRC, V_TGT, hidden_size=6, bidirectional=True, decoder_hidden_size=5, bridge="copy")


def test_unknown_cell_is_a_config_error():
    with pytest.raises(ConfigError, match="model=gru"):
        Seq2Seq(V_SRC, V_TGT, cell="transformer")


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_fused_teacher_forcing_equals_the_step_loop(cell):
    torch.manual_seed(0)
    model = Seq2Seq(
        V_SRC, V_TGT, cell=cell, embedding_dim=8, hidden_size=6, num_layers=2, bidirectional=True, dropout=0.0
    ).eval()
    src, src_lengths, tgt_in = make_batch()
    fused = model(src, src_lengths, tgt_in, tf_ratio=1.0)
    # ratio just below 1 takes the stepping path, with every coin landing on gold
    stepped = model(src, src_lengths, tgt_in, tf_ratio=1.0 - 1e-12)
    torch.testing.assert_close(fused, stepped, rtol=1e-5, atol=1e-6)


def test_mixed_teacher_forcing_flips_a_coin_per_example_and_step():
    torch.manual_seed(0)
    model = Seq2Seq(V_SRC, V_TGT, embedding_dim=8, hidden_size=6).eval()
    src, src_lengths, tgt_in = make_batch(batch=8, tgt_len=6)
    fused = model(src, src_lengths, tgt_in, tf_ratio=1.0)
    torch.manual_seed(1)
    mixed = model(src, src_lengths, tgt_in, tf_ratio=0.5)
    differs = ~torch.isclose(fused, mixed).all(-1)  # (B, T): where the model saw its own prediction
    assert not differs[:, 0].any()  # step 0 always reads <sos>
    # the coin is per example: some sentences diverge at different steps, not all at once
    first_divergence = {int(row.nonzero()[0]) if row.any() else -1 for row in differs}
    assert len(first_divergence) > 1
    torch.manual_seed(1)
    torch.testing.assert_close(mixed, model(src, src_lengths, tgt_in, tf_ratio=0.5))  # seeded


def test_model_learns_to_copy():
    torch.manual_seed(0)
    model = Seq2Seq(V_SRC, V_SRC, cell="gru", embedding_dim=16, hidden_size=32, bidirectional=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(300):
        src = torch.randint(4, V_SRC, (32, 4))
        tgt_in = torch.cat([torch.full((32, 1), SOS), src], dim=1)
        tgt_out = torch.cat([src, torch.full((32, 1), EOS)], dim=1)
        logits = model(src, torch.full((32,), 4), tgt_in)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt_out.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    src = torch.randint(4, V_SRC, (64, 4))
    hyps = GreedySearch(max_length=8)(model, src, torch.full((64,), 4), SOS, EOS, PAD)
    exact = (hyps.tokens[:, :4] == src).all(1) & (hyps.tokens[:, 4] == EOS)
    assert exact.float().mean() > 0.9
