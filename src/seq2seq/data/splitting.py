"""Seeded train/val/test splits of one list of examples, optionally keeping groups together."""

from __future__ import annotations

import random
from collections.abc import Sequence

from seq2seq.errors import ConfigError, DataError


def resolve_size(size: float, total: int, name: str) -> int:
    """Turn a split size into a count: ``0 < size < 1`` is a fraction of ``total`` (at least 1), else a count."""
    if size < 0 or (size >= 1 and size != int(size)):
        raise ConfigError(f"{name}={size} is not a fraction in (0, 1) or a whole count: set it to e.g. 0.05 or 500")
    if size == 0:
        return 0
    if size < 1:
        return max(1, round(size * total))
    return int(size)


def split_indices(
    total: int,
    val_size: float,
    test_size: float,
    seed: int,
    groups: Sequence[str] | None = None,
    what: str = "the data",
) -> dict[str, list[int]]:
    """Shuffle with ``seed`` and cut into ``{"train", "val", "test"}`` index lists.

    Args:
        total: number of examples.
        val_size, test_size: fractions in (0, 1) or counts (see :func:`resolve_size`).
        seed: the shuffle seed; the same seed always gives the same split.
        groups: optional key per example; examples with the same key land in the same split (no leakage of,
            e.g., one English sentence with two translations into both train and test).
        what: names the data in error messages.

    Returns:
        Disjoint index lists that together cover ``range(total)``.
    """
    n_val = resolve_size(val_size, total, "val_size")
    n_test = resolve_size(test_size, total, "test_size")
    if n_val + n_test >= total:
        raise DataError(
            f"{what} has {total} pairs, too few for {n_val} val + {n_test} test pairs and a train split: "
            "lower val_size/test_size or add data"
        )
    if groups is None:  # one example per key: the same split as below without a dict of lists of the whole data
        order = list(range(total))
        random.Random(seed).shuffle(order)
        return {"train": order[n_test + n_val :], "val": order[n_test : n_test + n_val], "test": order[:n_test]}
    keys = groups
    members: dict[object, list[int]] = {}
    for index, key in enumerate(keys):
        members.setdefault(key, []).append(index)
    order = list(members)
    random.Random(seed).shuffle(order)
    splits: dict[str, list[int]] = {"test": [], "val": [], "train": []}
    wanted = {"test": n_test, "val": n_val}
    name = "test"
    for key in order:
        while name != "train" and len(splits[name]) >= wanted[name]:
            name = "val" if name == "test" else "train"
        splits[name].extend(members[key])
    if not splits["train"]:
        raise DataError(f"{what} has too few distinct pairs to leave a train split: lower val_size/test_size")
    return {"train": splits["train"], "val": splits["val"], "test": splits["test"]}
