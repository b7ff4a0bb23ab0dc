# The verbs people use. CI calls the same ones (.ci/run).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DEMO   := data/demo

.PHONY: setup demo test lint bench bench-quick fuzz clean

$(BIN)/audtools: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/audtools  ## create .venv and install audtools with its test tools

demo: setup  ## a sample workspace in data/demo: two weeks of deliveries played day by day, runs/index.html
	rm -rf $(DEMO)
	$(BIN)/audtools init $(DEMO)
	$(BIN)/audtools samples -w $(DEMO) --history 14 -q
	$(BIN)/audtools batches -w $(DEMO)
	$(BIN)/audtools catalog -w $(DEMO)
	$(BIN)/python -m audtools.samples.demo $(DEMO)
	$(BIN)/audtools export -w $(DEMO) --where "loyalty_points >= 1000" --segment-name "Demo loyal customers" --data-source samplesVisitorId
	$(BIN)/audtools run -w $(DEMO) match_rate_report -p period all

test: setup  ## every test, slow ones included
	$(BIN)/python -m pytest -q

lint: setup  ## ruff, mypy, and the import contracts of pyproject.toml (import-linter)
	$(BIN)/ruff check audtools tests benchmarks
	$(BIN)/mypy audtools
	$(BIN)/lint-imports

clean:
	rm -rf $(DEMO) .pytest_cache .hypothesis

bench: setup  ## the benchmark at 10 M IDs (data generated once into benchmarks/.cache)
	$(BIN)/python benchmarks/run.py

bench-quick: setup  ## the benchmark at 100,000 IDs, a few minutes
	$(BIN)/python benchmarks/run.py --quick

fuzz: setup  ## a million generated inputs through the row, .info and catalog readers (10-20 min)
	$(BIN)/python fuzz/fuzz_readers.py --examples 1000000
