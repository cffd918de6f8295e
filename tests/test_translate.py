"""translate.py: one output line per input line, n-best lists, odd lines, bad decoding parameters."""

from __future__ import annotations

from conftest import translate


def test_translate_reverses_and_keeps_line_structure(reverse_run):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    lines = ["t1 t2 t3", "", "t5 t6 t7 t8", "zzz qqq", " ".join(["t4"] * 40)]
    result = translate(ckpt, "\n".join(lines) + "\n", "batch_size=2")
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("\n")[:-1]
    assert len(out) == len(lines)
    assert out[0] == "t3 t2 t1" and out[1] == "" and out[2] == "t8 t7 t6 t5"
    assert "truncated" in result.stderr  # the 40-token line is longer than the model's max source length


def test_translate_nbest_prints_scores(reverse_run):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    result = translate(ckpt, "t1 t2 t3\nt4 t5\n", "decoding=beam", "decoding.beam_size=4", "decoding.nbest=3")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == 6
    scores = [float(line.split("\t")[0]) for line in out[:3]]
    assert scores == sorted(scores, reverse=True)
    assert out[0].split("\t")[1] == "t3 t2 t1"
    assert len({line.split("\t")[1] for line in out[:3]}) == 3


def test_bad_decoding_parameters_fail_before_loading(tmp_path):
    result = translate(tmp_path / "missing.ckpt", "x\n", "decoding=beam", "decoding.beam_size=2", "decoding.nbest=3")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: decoding.nbest")
