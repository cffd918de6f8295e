"""Encoder, context (bridge), decoder and the whole model: shapes, fused vs stepped paths, learning."""

import copy
import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seq2seq.decoding import GreedySearch
from seq2seq.errors import ConfigError
from seq2seq.modules import Seq2Seq
from seq2seq.modules import encoder as encoder_module
from seq2seq.modules.context import Bridge
from seq2seq.modules.encoder import RecurrentEncoder
from seq2seq.modules.rnn import make_rnn, map_state

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


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_encoder_output_and_state_of_an_unsorted_batch_equal_each_sequence_alone(cell):
    torch.manual_seed(0)
    encoder = RecurrentEncoder(V_SRC, 8, 6, num_layers=2, cell=cell, bidirectional=True, dropout=0.0, pad_id=PAD)
    src, _, _ = make_batch(batch=4, src_len=7)
    src_lengths = torch.tensor([3, 7, 1, 5])  # not sorted
    for i, n in enumerate(src_lengths):
        src[i, n:] = PAD
    outputs, state = encoder(src, src_lengths)
    for i, n in enumerate(src_lengths.tolist()):
        alone_outputs, alone_state = encoder(src[i : i + 1, :n], src_lengths[i : i + 1])
        torch.testing.assert_close(outputs[i : i + 1, :n], alone_outputs)
        assert outputs[i, n:].abs().sum() == 0
        for got, want in zip(state if cell == "lstm" else (state,), alone_state if cell == "lstm" else (alone_state,)):
            torch.testing.assert_close(got[:, i : i + 1], want)


def test_encoder_packs_sorted_host_lengths_so_nothing_is_copied_to_or_from_the_device(monkeypatch):
    """``enforce_sorted=False`` copies the sort order to the device and ``pad_packed_sequence`` copies the inverse
    order back to the host, on every call (blocking on a GPU). The encoder sorts the CPU lengths itself and
    packs without sort indices; a GPU test (tests/test_gpu.py) checks the whole step under sync debug mode."""
    calls = []

    def spy_pack(padded, lengths, batch_first=False, enforce_sorted=True):
        calls.append((lengths, enforce_sorted))
        return pack_padded_sequence(padded, lengths, batch_first=batch_first, enforce_sorted=enforce_sorted)

    def spy_pad(sequence, *args, **kwargs):
        calls.append(("indices", sequence.sorted_indices, sequence.unsorted_indices))
        return pad_packed_sequence(sequence, *args, **kwargs)

    monkeypatch.setattr(encoder_module, "pack_padded_sequence", spy_pack)
    monkeypatch.setattr(encoder_module, "pad_packed_sequence", spy_pad)
    encoder = RecurrentEncoder(V_SRC, 8, 6, num_layers=1, cell="gru", bidirectional=False, dropout=0.0, pad_id=PAD)
    src, _, _ = make_batch(batch=3, src_len=5)
    encoder(src, torch.tensor([2, 5, 4]))
    (lengths, enforce_sorted), (_, sorted_indices, unsorted_indices) = calls
    assert lengths.device.type == "cpu" and lengths.tolist() == [5, 4, 2]
    assert enforce_sorted
    assert sorted_indices is None and unsorted_indices is None


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_rnn_runs_in_the_autocast_dtype(cell, dtype):
    """Autocast casts a cuDNN RNN to fp16 whatever its dtype (and on the CPU leaves RNN/GRU in fp32): the RNNs
    cast themselves to the autocast dtype, and their fp32 weights still get gradients."""
    torch.manual_seed(0)
    rnn = make_rnn(cell, 8, 16, num_layers=2, dropout=0.0, bidirectional=True)
    x = torch.randn(3, 5, 8)
    hx = torch.randn(4, 3, 16)
    hx = (hx, torch.randn(4, 3, 16)) if cell == "lstm" else hx
    with torch.autocast("cpu", dtype=dtype):
        output, state = rnn(x, hx)
    assert output.dtype == dtype
    lowered = copy.deepcopy(rnn).to(dtype)  # the same weights, rounded to the autocast dtype
    want, _ = lowered(x.to(dtype), map_state(hx, lambda h: h.to(dtype)))
    torch.testing.assert_close(output, want)
    output.float().sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in rnn.parameters())
    packed = pack_padded_sequence(x, torch.tensor([5, 3, 2]), batch_first=True)
    with torch.autocast("cpu", dtype=dtype):
        packed_output, _ = rnn(packed)
    assert packed_output.data.dtype == dtype
    assert all(p.dtype == torch.float32 for p in rnn.parameters())


def test_model_trains_a_step_under_bf16_autocast_with_bf16_recurrence():
    torch.manual_seed(0)
    model = Seq2Seq(V_SRC, V_TGT, cell="lstm", embedding_dim=8, hidden_size=6, attention={"kind": "bahdanau"})
    src, src_lengths, tgt_in = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        encoded = model.encode(src, src_lengths)
        loss = model.loss(src, src_lengths, tgt_in, tgt_in.roll(-1, 1))
    assert encoded.memory.dtype == torch.bfloat16
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
