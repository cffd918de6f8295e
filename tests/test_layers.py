"""The package's structure: its layers (an import-linter contract in pyproject.toml) and no import cycles."""

from __future__ import annotations

import subprocess
import sys

import grimp
import pytest
from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def contract_layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def test_imports_keep_the_layers():
    lint = [str(ROOT / ".venv" / "bin" / "lint-imports")] if (ROOT / ".venv/bin/lint-imports").exists() else None
    command = lint or [sys.executable, "-m", "importlinter.cli"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stdout[-3000:]


def test_every_module_of_the_package_has_a_layer():
    graph = grimp.build_graph("seq2seq")
    top_level = {".".join(module.split(".")[:2]) for module in graph.modules if module.count(".") >= 1}
    assert top_level - set(contract_layers()) == set(), "add the new module to [tool.importlinter] in pyproject.toml"


def test_no_import_cycles():
    graph = grimp.build_graph("seq2seq", exclude_type_checking_imports=True)
    # A package's __init__ importing its own modules is not a cycle of the code; edges into a package do count.
    edges = {
        module: {
            imported
            for imported in graph.find_modules_directly_imported_by(module)
            if not (graph.find_children(module) and imported.startswith(f"{module}."))
        }
        for module in graph.modules
    }
    cycles = []
    for start in sorted(edges):
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for imported in edges[module]:
                if imported == start:
                    cycles.append(" → ".join([*path, start]))
                elif imported not in seen and imported > start:
                    seen.add(imported)
                    stack.append((imported, [*path, imported]))
    assert cycles == [], cycles
