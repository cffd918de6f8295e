"""Use a trained model: load it (a checkpoint, an ensemble) and turn text into hypotheses (`Translator`), or
evaluate it on a data split (`evaluation`)."""

from seq2seq.inference.translator import Hypothesis, Translation, Translator, load_translator

__all__ = ["Hypothesis", "Translation", "Translator", "load_translator"]
