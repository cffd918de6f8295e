"""Serve a trained model over HTTP: ``python src/serve.py ckpt_path=PATH [port=8080] [decoding=…]``.

``POST /translate`` translates (concurrent requests are batched into one decoding batch), ``GET /info`` describes
the model, ``GET /health`` answers while the server is up, and ``/`` is a web page that translates and shows the
attention of each hypothesis. ``ckpt_path=[a.ckpt,b.ckpt]`` serves an ensemble; decoding defaults to the
checkpoint's own, as in translate.py. See docs/serving.md.
"""

from __future__ import annotations

import hydra
import lightning as L
from omegaconf import DictConfig

from seq2seq.errors import ConfigError
from seq2seq.inference import load_translator
from seq2seq.serving import BatchingSettings, Limits, bind, create_app, serve
from seq2seq.utils.cli import entry_point, user_errors

entry_point(__file__)


def limits_from(cfg: DictConfig, max_source_length: int) -> Limits:
    """The request limits of ``cfg.limits``; ``max_tokens: null`` is the model's max source length (256 if none)."""
    values = dict(cfg.limits)
    if values.get("max_tokens") is None:
        values["max_tokens"] = max_source_length or 256
    for name, value in values.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"limits.{name} must be a positive number, got {value!r}")
    return Limits(**values)


@hydra.main(version_base="1.3", config_path="../conf", config_name="serve.yaml")
def main(cfg: DictConfig) -> None:
    """Hydra entry point."""
    with user_errors():
        L.seed_everything(cfg.seed, verbose=False)
        batching = BatchingSettings(**cfg.batching)
        sock = bind(cfg.host, cfg.port)  # a port in use fails now, before the model loads
        translator = load_translator(cfg.ckpt_path, cfg.get("decoding"), device=cfg.device, backend=cfg.backend)
        limits = limits_from(cfg, translator.max_source_length)
    serve(create_app(translator, limits, batching), sock, cfg.graceful_shutdown_s, cfg.access_log)


if __name__ == "__main__":
    main()
