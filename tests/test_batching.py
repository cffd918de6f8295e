"""Collation into padded batches, and the length-bucketing batch sampler (epochs, padding, DDP sharding)."""

from __future__ import annotations

import random

import pytest
import torch

from seq2seq.data.batching import Batch, collate, pad_sequences, pad_source
from seq2seq.data.samplers import BucketBatchSampler
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, UNK_ID
from seq2seq.errors import CheckpointError, DataError


def _example(src: list[int], tgt: list[int]) -> dict:
    return {"src_ids": src, "tgt_ids": tgt, "source": f"s{len(src)}", "target": f"t{len(tgt)}"}


def test_collate_shapes_and_special_tokens():
    examples = [_example([5, 6, 7], [8, 9]), _example([], [10, 11, 12, 13]), _example([14], [])]
    batch = collate(examples)
    assert isinstance(batch, Batch)
    assert batch.src.shape == (3, 4) and batch.src.dtype == torch.long  # longest source 3 + <eos>
    assert batch.src_lengths.tolist() == [4, 1, 2]  # an empty source still has its <eos>
    assert batch.src.tolist() == [[5, 6, 7, EOS_ID], [EOS_ID, PAD_ID, PAD_ID, PAD_ID], [14, EOS_ID, PAD_ID, PAD_ID]]
    assert batch.tgt_in.shape == batch.tgt_out.shape == (3, 5)
    assert (batch.tgt_in[:, 0] == SOS_ID).all()
    assert batch.tgt_in.tolist()[0] == [SOS_ID, 8, 9, PAD_ID, PAD_ID]
    assert batch.tgt_out.tolist()[0] == [8, 9, EOS_ID, PAD_ID, PAD_ID]
    assert batch.tgt_out.tolist()[2] == [EOS_ID, PAD_ID, PAD_ID, PAD_ID, PAD_ID]
    # tgt_out is tgt_in shifted left by one, ending in <eos> before the padding
    lengths = torch.tensor([len(e["tgt_ids"]) for e in examples])
    assert (batch.tgt_out.gather(1, lengths[:, None]).squeeze(1) == EOS_ID).all()
    assert (
        batch.tgt_out[:, :-1][batch.tgt_in[:, 1:] != PAD_ID] == batch.tgt_in[:, 1:][batch.tgt_in[:, 1:] != PAD_ID]
    ).all()
    assert batch.src_text == ["s3", "s0", "s1"] and batch.tgt_text == ["t2", "t4", "t0"]


def test_pad_helpers():
    padded, lengths = pad_sequences([[1, 2], [3], [4, 5, 6]], pad_id=0)
    assert padded.tolist() == [[1, 2, 0], [3, 0, 0], [4, 5, 6]] and lengths.tolist() == [2, 1, 3]
    src, src_lengths = pad_source([[UNK_ID, 9], []])
    assert src.tolist() == [[UNK_ID, 9, EOS_ID], [EOS_ID, PAD_ID, PAD_ID]] and src_lengths.tolist() == [3, 1]


def test_batch_moves_as_a_whole():
    from lightning.fabric.utilities.apply_func import move_data_to_device

    batch = collate([_example([5], [6])])
    moved = move_data_to_device(batch, torch.device("meta"))  # a device without data, to see what moved
    assert isinstance(moved, Batch) and {t.device.type for t in (moved.src, moved.tgt_in, moved.tgt_out)} == {"meta"}
    # the lengths stay on the CPU, where packing reads them, so no step waits for a device-to-host copy
    assert moved.src_lengths.device.type == "cpu" and moved.src_lengths.tolist() == batch.src_lengths.tolist()
    assert moved.src_text == batch.src_text


def _padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


_RNG = random.Random(0)
LENGTHS = [_RNG.randint(1, 60) for _ in range(2000)]


def test_every_index_once_per_epoch_and_epochs_differ():
    sampler = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=True, seed=1, bucket_size_multiplier=10)
    first = list(sampler)
    assert len(first) == len(sampler)
    assert sorted(i for b in first for i in b) == list(range(len(LENGTHS)))
    assert all(1 <= len(b) <= 32 for b in first)
    assert list(sampler) == first  # same epoch, same order
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(i for b in second for i in b) == list(range(len(LENGTHS)))
    assert second != first
    other_seed = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=True, seed=2, bucket_size_multiplier=10)
    assert list(other_seed) != first


def test_bucketing_cuts_padding():
    sampler = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=True, seed=1)
    order = list(range(len(LENGTHS)))
    random.Random(0).shuffle(order)
    random_batches = [order[i : i + 32] for i in range(0, len(order), 32)]
    bucketed, unbucketed = _padding(list(sampler), LENGTHS), _padding(random_batches, LENGTHS)
    assert bucketed < 0.05 * unbucketed, (bucketed, unbucketed)  # ~0.9 vs ~28 pads per example


def test_eval_batches_are_sorted_by_length_and_complete():
    sampler = BucketBatchSampler(LENGTHS, batch_size=64, shuffle=False, seed=0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 32
    flat = [i for b in batches for i in b]
    assert sorted(flat) == list(range(len(LENGTHS)))
    assert [LENGTHS[i] for i in flat] == sorted(LENGTHS)


@pytest.mark.parametrize("size", [7, 100, 1000, 2001])
def test_ddp_training_shards_have_equal_counts(size):
    lengths = LENGTHS[:size] if size <= len(LENGTHS) else LENGTHS + LENGTHS[: size - len(LENGTHS)]
    world = 3
    shards = [
        list(
            BucketBatchSampler(lengths, 16, shuffle=True, seed=5, num_replicas=world, rank=r, bucket_size_multiplier=4)
        )
        for r in range(world)
    ]
    counts = {len(shard) for shard in shards}
    assert len(counts) == 1  # every rank runs the same number of steps
    expected = len(
        BucketBatchSampler(lengths, 16, shuffle=True, seed=5, num_replicas=world, rank=0, bucket_size_multiplier=4)
    )
    assert counts == {expected}
    seen = {i for shard in shards for b in shard for i in b}
    assert seen == set(range(size))


@pytest.mark.parametrize("size", [7, 100, 1000])
def test_ddp_eval_shards_have_no_duplicates(size):
    lengths = LENGTHS[:size]
    world = 4
    samplers = [
        BucketBatchSampler(lengths, 16, shuffle=False, seed=0, num_replicas=world, rank=r) for r in range(world)
    ]
    shards = [list(s) for s in samplers]
    assert [len(s) for s in shards] == [len(s) for s in samplers]
    flat = [i for shard in shards for b in shard for i in b]
    assert len(flat) == len(set(flat)) == size  # no duplicates, nothing missing


@pytest.mark.parametrize(
    "size,batch_size,world", [(7, 16, 4), (20, 16, 8), (32, 32, 2), (9, 4, 8), (100, 16, 3), (8, 64, 8)]
)
def test_every_rank_gets_an_eval_batch_and_the_shards_cover_the_split_once(size, batch_size, world):
    """A rank without an eval batch would skip the loop and hang the others in the metric sync."""
    lengths = LENGTHS[:size]
    samplers = [
        BucketBatchSampler(lengths, batch_size, shuffle=False, seed=0, num_replicas=world, rank=r) for r in range(world)
    ]
    shards = [list(s) for s in samplers]
    assert [len(s) for s in shards] == [len(s) for s in samplers]
    assert all(len(shard) >= 1 and all(batch for batch in shard) for shard in shards)
    assert all(len(batch) <= batch_size for shard in shards for batch in shard)
    flat = sorted(i for shard in shards for b in shard for i in b)
    assert flat == list(range(size))  # disjoint and covering


def test_eval_batches_stay_full_when_there_are_enough_for_every_rank():
    sampler = BucketBatchSampler(LENGTHS[:100], 16, shuffle=False, seed=0, num_replicas=3, rank=0)
    assert [len(b) for b in sampler.batches()] == [16] * 6 + [4]


def test_eval_split_smaller_than_the_world_is_a_data_error():
    with pytest.raises(DataError, match=r"shorter \(3\).*processes.*\(4\).*trainer\.devices=3"):
        BucketBatchSampler([1, 2, 3], 16, shuffle=False, seed=0, num_replicas=4, rank=0)


def test_invalid_rank():
    with pytest.raises(ValueError, match="rank"):
        BucketBatchSampler([1, 2], 2, shuffle=False, seed=0, num_replicas=2, rank=2)


def test_lightning_reaches_set_epoch_through_the_dataloader():
    from lightning.fabric.utilities.data import _set_sampler_epoch
    from torch.utils.data import DataLoader

    sampler = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=True, seed=1)
    loader = DataLoader(list(range(len(LENGTHS))), batch_sampler=sampler)
    first = list(sampler)
    _set_sampler_epoch(loader, 3)  # what the fit loop does at every epoch start
    assert sampler.epoch == 3 and list(sampler) != first
    assert sorted(sampler.sampler) == list(range(len(LENGTHS)))


def test_a_loaded_state_serves_exactly_the_rest_of_the_epoch_then_the_next():
    sampler = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=True, seed=1, num_replicas=2, rank=1)
    sampler.set_epoch(2)
    epoch = list(sampler)
    served = iter(sampler)
    for _ in range(5):
        next(served)
    state = sampler.state_dict()
    assert state["epoch"] == 2 and state["batches_done"] == 5

    resumed = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=True, seed=1, num_replicas=2, rank=1)
    resumed.load_state_dict(state)
    assert list(resumed) == epoch[5:]
    assert list(resumed) == epoch  # the position is used once: iterating again serves the whole epoch
    sampler.set_epoch(3)
    next_epoch = list(sampler)
    resumed.load_state_dict(state)
    resumed.set_epoch(3)  # the fit loop moves on to the next epoch: it starts from its beginning
    assert list(resumed) == next_epoch


@pytest.mark.parametrize("num_workers", [0, 1])
def test_the_loader_saves_the_batches_training_received(num_workers):
    from torch.utils.data import DataLoader

    from seq2seq.data.samplers import ResumableDataLoader

    def loader(seed: int = 1) -> ResumableDataLoader:
        sampler = BucketBatchSampler(LENGTHS, batch_size=32, shuffle=True, seed=seed)
        return ResumableDataLoader(list(range(len(LENGTHS))), batch_sampler=sampler, num_workers=num_workers)

    first = loader()
    epoch = [batch.tolist() for batch in DataLoader(list(range(len(LENGTHS))), batch_sampler=first.batch_sampler)]
    batches = iter(first)
    taken = [next(batches).tolist() for _ in range(7)]  # with a worker, the sampler has run ahead of these
    state = first.state_dict()
    assert state["batches_done"] == 7 and taken == epoch[:7]

    resumed = loader()
    resumed.load_state_dict(state)
    assert [batch.tolist() for batch in resumed] == epoch[7:]
    assert resumed.state_dict()["batches_done"] == len(epoch)

    with pytest.raises(CheckpointError, match="seed=1"):
        loader(seed=2).load_state_dict(state)  # another order: which batches are left cannot be told
    loader(seed=2).load_state_dict(resumed.state_dict())  # a finished epoch leaves nothing to tell


def _unfinished_state(**settings) -> dict:
    """The state of a sampler over 100 examples that served 4 of its batches."""
    options = {"lengths": [5] * 100, "batch_size": 10, "num_replicas": 1, **settings}
    sampler = BucketBatchSampler(options.pop("lengths"), shuffle=True, seed=1, **options)
    served = iter(sampler)
    for _ in range(4):
        next(served)
    return sampler.state_dict()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"batch_size": 11}, "data.batch_size=10"),  # 10 batches of 10 or of up to 11
        ({"batch_size": 5, "num_replicas": 2}, "1 process"),  # 10 batches per rank either way
        ({"lengths": [5] * 95}, "100 training pairs"),  # another data set, still 10 batches
    ],
)
def test_a_mid_epoch_state_refuses_other_batch_size_replicas_or_data(change, named):
    """The same number of batches per rank, but other batches: the rest of the epoch cannot be told."""
    state = _unfinished_state()
    options = {"lengths": [5] * 100, "batch_size": 10, "num_replicas": 1, **change}
    resumed = BucketBatchSampler(options.pop("lengths"), shuffle=True, seed=1, **options)
    assert len(resumed) == state["num_batches"] == 10
    with pytest.raises(CheckpointError, match="epoch-end last.ckpt") as refused:
        resumed.load_state_dict(state)
    assert named in str(refused.value)


def test_a_state_at_the_end_of_an_epoch_accepts_new_settings():
    sampler = BucketBatchSampler([5] * 100, batch_size=10, shuffle=True, seed=1)
    list(sampler)
    resumed = BucketBatchSampler([5] * 120, batch_size=20, shuffle=True, seed=1, num_replicas=2, rank=1)
    resumed.load_state_dict(sampler.state_dict())
    resumed.set_epoch(1)  # the fit loop moves on to the next epoch
    assert len(list(resumed)) == len(resumed) == 3
