# The two commands: `make train` and `make test` (each sets up .venv first when needed).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# Installed before the project, so the project's `torch>=2.3` is already met: a local CPU build where pip
# finds one, the matching CUDA build from PyPI on a GPU machine. Override with TORCH="torch==X".
TORCH ?= torch==2.13.0

.PHONY: setup browser train test test-slow lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

train: setup
	$(BIN)/python src/train.py $(ARGS)

# The web page's test drives Debian's chromium (Playwright's own browser download needs more than PyPI); installed
# where this may (root with apt-get), else that test skips naming the command.
browser:
	@dpkg -s chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "note: chromium not installed (as root on Debian: apt-get install chromium); the browser test will skip"

# One worker per core (pytest-xdist), each taking whole test files, so a file's shared fixtures are built once.
test: setup browser
	$(BIN)/python -m pytest -q -n auto --dist loadfile $(ARGS)

test-slow: setup
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m slow $(ARGS)

lint: setup
	$(BIN)/pre-commit run --all-files

clean:
	rm -rf $(VENV) logs data/cache
