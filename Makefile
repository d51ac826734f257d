# The two commands of the README: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test lint bench clean

# Re-install only when the project's metadata changes.
$(VENV)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# The classifier is trained here from classifiers/data (deterministic, well under a minute), so
# a fresh checkout has a model after either command; `rightsdesk run` never trains.
MODEL := classifiers/model/rightsdesk.json
$(MODEL): $(VENV)/.installed $(wildcard classifiers/data/*) $(wildcard classifiers/devsets/*) $(wildcard classifiers/*.py)
	$(BIN)/rightsdesk classifier train

## Install into .venv, migrate the database and start the service on its embedded defaults.
run: $(VENV)/.installed $(MODEL)
	$(BIN)/rightsdesk run $(if $(CONFIG),--config $(CONFIG))

## Lint, type-check and run the whole test suite (SQLite and PostgreSQL), a process per core.
# --dist loadfile: a file's tests share their servers (console, Dovecot) in one process.
test: $(VENV)/.installed $(MODEL)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest -n auto --dist loadfile

lint: $(VENV)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
