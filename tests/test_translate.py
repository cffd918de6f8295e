"""translate.py: one output line per input line, n-best lists, odd lines, bad decoding parameters."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, translate


def test_translate_reverses_and_keeps_line_structure(reverse_run):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    lines = ["t1 t2 t3", "", "t5 t6 t7 t8", "zzz qqq", " ".join(["t4"] * 40)]
    result = translate(ckpt, "\n".join(lines) + "\n", "batch_size=2")
    assert result.returncode == 0, result.stderr
    out = result.stdout.split("\n")[:-1]
    assert len(out) == len(lines)
    assert out[0] == "t3 t2 t1" and out[1] == "" and out[2] == "t8 t7 t6 t5"
    # the 40-token line is longer than the model's max source length; named by its line in the input
    assert "input line 5 has 40 tokens; truncated" in result.stderr


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


def test_input_that_is_not_utf8_is_replaced_and_named_not_fatal(reverse_run):
    ckpt = reverse_run / "checkpoints" / "best.ckpt"
    lines = [b"t1 t2 t3", b"t4 \xff\xfe t5", b"t5 t6 t7 t8", b"t2 t9"]
    cmd = [sys.executable, str(ROOT / "src" / "translate.py"), f"ckpt_path={ckpt}", "batch_size=2"]
    result = subprocess.run(cmd, cwd=ROOT, input=b"\n".join(lines) + b"\n", capture_output=True, timeout=300)
    stderr = result.stderr.decode()
    assert result.returncode == 0, stderr
    out = result.stdout.decode().split("\n")[:-1]
    assert len(out) == len(lines)  # one output line per input line, the valid ones translated
    assert out[0] == "t3 t2 t1" and out[2] == "t8 t7 t6 t5" and out[3] == "t9 t2"
    warnings = [line for line in stderr.splitlines() if "UTF-8" in line]
    assert len(warnings) == 1 and "line 2" in warnings[0] and warnings[0].startswith("warning: ")
