"""Translate stdin line by line: ``python src/translate.py ckpt_path=PATH [decoding=…]``.

``ckpt_path=[a.ckpt,b.ckpt]`` translates with the ensemble of several checkpoints with one vocabulary (the log of
their mean probability at each step, `seq2seq.decoding.Ensemble`), with the first one's decoding and data settings.

Reads a pipe in batches, or prompts on a terminal (Ctrl-D quits). Needs nothing but the checkpoint. Input is
UTF-8; a line that is not gets its undecodable bytes replaced (and a warning), so every line has its output line.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from seq2seq.checkpoint import checkpoint_paths, checkpoint_tokenizers, load_ensemble, restore_ensemble
from seq2seq.data.batching import pad_source
from seq2seq.data.tokenizers import EOS_ID, PAD_ID, SOS_ID, decode, encode_batch, tokenizer_from_str
from seq2seq.decoding import BeamSearch
from seq2seq.errors import ConfigError
from seq2seq.plotting import attention_figure, save_figure
from seq2seq.utils.cli import user_errors

# The repository, whatever PROJECT_ROOT the shell may hold for another project: conf/paths reads it, and
# paths.root_dir=DIR moves data, cache and logs on purpose.
os.environ["PROJECT_ROOT"] = str(Path(__file__).resolve().parents[1])


class Translator:
    """A checkpoint's (or an ensemble's) model, tokenizers and decoding, turning lines of text into hypotheses."""

    def __init__(self, cfg: DictConfig) -> None:
        paths = checkpoint_paths(cfg.ckpt_path)
        members = load_ensemble(paths, cfg.get("decoding"))
        checkpoint, trained = members[0]  # the ensemble's tokenizers, data settings and decoding
        self.module = restore_ensemble(members)
        device = cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.module.to(self.device).eval()
        self.source_tokenizer = tokenizer_from_str(checkpoint_tokenizers(checkpoint)["source"])
        self.max_source_length = int(trained.data.get("max_length") or 0)
        self.search = self.module.decoding
        self.nbest = getattr(self.search, "nbest", 1)
        self.plot_dir = Path(cfg.plot_attention) if cfg.get("plot_attention") else None
        if self.plot_dir and not self.module.model.has_attention:
            models = self.module.model.members if len(paths) > 1 else [self.module.model]
            without = next(path for path, model in zip(paths, models) if not model.has_attention)
            raise ConfigError(
                f"plot_attention: {without} was trained with attention=none, so there is no attention to plot"
            )
        self.lines_read = 0

    def encode(self, lines: list[str], numbers: list[int]) -> list[list[int]]:
        """Source ids of each line, truncated to the model's max source length (``<eos>`` is added by padding).

        Args:
            lines: the source lines.
            numbers: their line numbers in the input, for warnings.
        """
        encoded = []
        for number, ids in zip(numbers, encode_batch(self.source_tokenizer, lines)):
            if self.max_source_length and len(ids) > self.max_source_length:
                print(
                    f"warning: input line {number} has {len(ids)} tokens; truncated to {self.max_source_length}",
                    file=sys.stderr,
                )
                ids = ids[: self.max_source_length]
            encoded.append(ids)
        return encoded

    @torch.no_grad()
    def translate(self, lines: list[str]) -> list[list[tuple[float, str]]]:
        """The n-best (score, hypothesis) list of each line; an empty line gets empty hypotheses."""
        results: list[list[tuple[float, str]]] = [[(0.0, "")] * self.nbest for _ in lines]
        todo = [i for i, line in enumerate(lines) if line.strip()]
        first_line, self.lines_read = self.lines_read + 1, self.lines_read + len(lines)
        if not todo:
            return results
        src, lengths = pad_source(self.encode([lines[i] for i in todo], [first_line + i for i in todo]))  # (B, S), (B,)
        src, lengths = src.to(self.device), lengths.to(self.device)
        if isinstance(self.search, BeamSearch):
            found = self.search.search(self.module.model, src, lengths, SOS_ID, EOS_ID, PAD_ID)  # (B, N, L)
        else:
            found = self.search(self.module.model, src, lengths, SOS_ID, EOS_ID, PAD_ID)
            found.tokens, found.scores = found.tokens[:, None], found.scores[:, None]
            found.attention = None if found.attention is None else found.attention[:, None]  # (B, 1, L, S)
        tokenizer = self.module.target_tokenizer
        if self.plot_dir:
            for row, i in enumerate(todo):
                figure = attention_figure(
                    found.attention[row, 0], src[row].tolist(), found.tokens[row, 0].tolist(),
                    self.source_tokenizer, tokenizer, EOS_ID,
                )  # fmt: skip
                save_figure(figure, self.plot_dir / f"line{first_line + i:05d}.png")
        for row, i in enumerate(todo):
            results[i] = [
                (float(score), decode(tokenizer, tokens))
                for score, tokens in zip(found.scores[row].tolist(), found.tokens[row])
            ]
        return results


def decoded_lines(stream: BinaryIO) -> Iterator[str]:
    """The lines of ``stream`` as text, without line ends, read one at a time.

    Bytes that are not UTF-8 become U+FFFD with a warning naming the line, so that line is still translated and
    the output keeps one line per input line; a UTF-8 byte order mark at the start is dropped.
    """
    for number, raw in enumerate(iter(stream.readline, b""), start=1):
        raw = raw.rstrip(b"\r\n")
        encoding = "utf-8-sig" if number == 1 else "utf-8"
        try:
            yield raw.decode(encoding)
        except UnicodeDecodeError as error:
            print(
                f"warning: input line {number} is not valid UTF-8 (byte {error.start + 1} is "
                f"{raw[error.start : error.end]!r}): undecodable bytes replaced by U+FFFD",
                file=sys.stderr,
            )
            yield raw.decode(encoding, errors="replace")


def batches(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    """Group lines into lists of ``size``."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def write(results: list[list[tuple[float, str]]], nbest: int) -> None:
    for hypotheses in results:
        for score, text in hypotheses:
            print(f"{score:.4f}\t{text}" if nbest > 1 else text)
    sys.stdout.flush()


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate.yaml")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        L.seed_everything(cfg.seed, verbose=False)
        translator = Translator(cfg)
        lines = decoded_lines(sys.stdin.buffer)
        if sys.stdin.isatty():
            print("Type a sentence and press Enter (Ctrl-D quits).", file=sys.stderr)
            while True:
                print("> ", end="", file=sys.stderr, flush=True)
                line = next(lines, None)
                if line is None:
                    break
                write(translator.translate([line]), translator.nbest)
        else:
            for batch in batches(lines, cfg.batch_size):
                write(translator.translate(batch), translator.nbest)


if __name__ == "__main__":
    main()
