"""The tutorial notebook runs from top to bottom on a CPU, and is kept in git without outputs."""

from __future__ import annotations

import json

import nbformat
from conftest import ROOT
from nbclient import NotebookClient

NOTEBOOK = ROOT / "notebooks" / "tutorial.ipynb"


def outputs_of(cell) -> tuple[str, int]:
    """The text a cell printed or displayed, and how many images it showed."""
    text, images = [], 0
    for output in cell.get("outputs", []):
        text.append(output.get("text", ""))
        data = output.get("data", {})
        text.append(data.get("text/plain", ""))
        images += "image/png" in data
    return "".join(text), images


def test_notebook_is_stored_without_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_tutorial_trains_translates_plots_and_reads_a_sweep_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("TUTORIAL_LOG_DIR", str(tmp_path))
    # the kernel and the runs it starts: one torch thread, fastest for a tiny model and immune to oversubscription
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT / "notebooks")}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if any cell fails

    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    outputs = [outputs_of(cell) for cell in code]
    assert sum(images for _, images in outputs) >= 2  # training curves and the attention map
    (run_dir,) = (tmp_path / "train" / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["val/exact_match"] >= 0.5, metrics  # the tutorial's model does learn to reverse
    assert any("t8 t3 t11 t5 t19" in text for text, _ in outputs)  # a translation shown in the table
    (sweep_dir,) = (tmp_path / "train" / "multiruns").iterdir()
    summary = (sweep_dir / "summary.md").read_text()
    assert summary.count("| completed |") == 2 and any("model.cell=lstm" in text for text, _ in outputs)
