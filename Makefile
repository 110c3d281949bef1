# Two entry points for a fresh machine with Python 3.11: `make demo` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test dev screenshots lint bench clean-home

$(INSTALLED): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(INSTALLED)

demo: $(INSTALLED)  ## run the pipeline on the sample data, serve the bento locally, send sample requests
	$(BIN)/mlops demo

test: $(INSTALLED)  ## lint and run the whole test suite (installs PostgreSQL's server binaries and Chromium if missing)
	$(BIN)/ruff check .
	sh scripts/ensure_postgres.sh
	sh scripts/ensure_browser.sh
	$(BIN)/pytest

dev: $(INSTALLED)  ## open the Dagster UI on this project's instance
	$(BIN)/mlops dev

screenshots: $(INSTALLED)  ## retake the README's UI screenshots (docs/screenshots/) with the browser test
	sh scripts/ensure_browser.sh
	MLOPS_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q mlops_assets_tests/test_ui_browser.py

bench: $(INSTALLED)  ## serving benchmark (installs wrk if missing); results in benchmarks/results/ and README.md
	sh benchmarks/setup.sh
	$(BIN)/python benchmarks/bench_serving.py $(BENCH_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check .

clean-home:  ## forget all local state (Dagster runs, models, bentos, exported data)
	-$(BIN)/mlops undeploy local
	rm -rf .mlops
