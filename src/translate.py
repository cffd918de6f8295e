"""Translate stdin line by line: ``python src/translate.py ckpt_path=PATH [decoding=…]``.

``ckpt_path=[a.ckpt,b.ckpt]`` translates with the ensemble of several checkpoints with one vocabulary (the log of
their mean probability at each step, `seq2seq.decoding.Ensemble`), with the first one's decoding and data settings.

Reads a pipe in batches, or prompts on a terminal (Ctrl-D quits). Needs nothing but the checkpoint. Input is
UTF-8; a line that is not gets its undecodable bytes replaced (and a warning), so every line has its output line.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import hydra
import lightning as L
from omegaconf import DictConfig

from seq2seq.errors import ConfigError
from seq2seq.inference import Translation, Translator, load_translator
from seq2seq.plotting import plot_attention, save_figure
from seq2seq.utils.cli import entry_point, user_errors

entry_point(__file__)


class LineTranslator:
    """A `Translator` fed numbered input lines: warns about truncated lines by number and plots attention."""

    def __init__(self, translator: Translator, plot_dir: Path | None = None) -> None:
        self.translator = translator
        self.plot_dir = plot_dir
        self.lines_read = 0

    def translate(self, lines: list[str]) -> list[Translation]:
        """Translate the next ``lines`` of the input as one batch."""
        first_line, self.lines_read = self.lines_read + 1, self.lines_read + len(lines)
        results = self.translator.translate(lines, attention=self.plot_dir is not None)
        for number, result in enumerate(results, start=first_line):
            if result.truncated and result.source.strip():
                print(
                    f"warning: input line {number} has {result.source_length} tokens; truncated to "
                    f"{self.translator.max_source_length}",
                    file=sys.stderr,
                )
            best = result.hypotheses[0]
            if self.plot_dir and best.attention is not None:
                figure = plot_attention(best.attention, result.source_tokens, best.tokens)
                save_figure(figure, self.plot_dir / f"line{number:05d}.png")
        return results


def line_translator(cfg: DictConfig) -> LineTranslator:
    """The translator of ``cfg.ckpt_path`` (one checkpoint or an ensemble), with ``cfg.decoding`` if given."""
    translator = load_translator(cfg.ckpt_path, cfg.get("decoding"), device=cfg.device)
    plot_dir = Path(cfg.plot_attention) if cfg.get("plot_attention") else None
    if plot_dir and not translator.has_attention:
        raise ConfigError(
            f"plot_attention: {translator.info()['checkpoints'][-1]} was trained with attention=none, so there is "
            "no attention to plot"
        )
    return LineTranslator(translator, plot_dir)


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


def write(results: list[Translation], nbest: int) -> None:
    """Print each line's best hypothesis, or with ``nbest`` > 1 its n-best as ``score<TAB>text`` lines."""
    for result in results:
        for hypothesis in result.hypotheses:
            print(f"{hypothesis.score:.4f}\t{hypothesis.text}" if nbest > 1 else hypothesis.text)
    sys.stdout.flush()


@hydra.main(version_base="1.3", config_path="../conf", config_name="translate.yaml")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        L.seed_everything(cfg.seed, verbose=False)
        translator = line_translator(cfg)
        lines = decoded_lines(sys.stdin.buffer)
        if sys.stdin.isatty():
            print("Type a sentence and press Enter (Ctrl-D quits).", file=sys.stderr)
            while True:
                print("> ", end="", file=sys.stderr, flush=True)
                line = next(lines, None)
                if line is None:
                    break
                write(translator.translate([line]), translator.translator.nbest)
        else:
            for batch in batches(lines, cfg.batch_size):
                write(translator.translate(batch), translator.translator.nbest)


if __name__ == "__main__":
    main()
