"""Data layer: text-pair sources, tokenizers, length-bucketed batching and the Lightning datamodule.

Import from the submodules (``seq2seq.data.sources``, ``.tokenizers``, ``.batching``, ``.datamodule``);
this file imports nothing so that ``import seq2seq.data.tokenizers`` does not pull in Lightning.
"""
