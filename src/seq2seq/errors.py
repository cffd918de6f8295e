"""User-facing errors: the entry points print their message on one line and exit with code 2."""


class Seq2SeqError(Exception):
    """A problem the user can fix; its message says what is wrong and how to fix it."""


class ConfigError(Seq2SeqError):
    """An unknown or inconsistent configuration value."""


class DataError(Seq2SeqError):
    """A missing, empty, misaligned or unreadable data file or column."""


class CheckpointError(Seq2SeqError):
    """A checkpoint path that does not exist or is not a checkpoint of this project."""
