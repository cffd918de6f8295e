"""Keep Lightning's start-up noise off the terminal: the advertising tip, notes on defaults, an internal warning."""

from __future__ import annotations

import logging
import re
import warnings

# What Lightning prints at every start that tells the user nothing about their run.
NOISE = re.compile(
    r"💡 Tip:"  # advertising for Lightning's cloud products
    r"|`Trainer\(limit_(train|val|test|predict)_batches=1(\.0)?\)` was configured so"  # our defaults, restated
)


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not NOISE.search(record.getMessage())


def quiet_lightning() -> None:
    """Drop Lightning's tip and default-limit notes, and a deprecation warning raised inside Lightning itself."""
    # lightning_utilities logs through whichever of these two loggers was set up last
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())
    # lightning/pytorch/utilities/_pytree.py calls a torch API that torch deprecated; nothing a user can change
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
