# Two commands on a fresh machine: `make run` and `make test`. Both bootstrap .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-slow screenshots lint format bench lock clean

# Everything (web, worker, ONNX, tracking, dev tools) at the versions of requirements.lock.
# Re-install only when the dependency list changes (idempotent, fast when up to date).
$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q --upgrade pip
	$(BIN)/pip install --disable-pip-version-check -q -c requirements.lock -e '.[all,dev]'
	touch $(STAMP)

# Regenerate requirements.lock after changing a dependency in pyproject.toml (README: Install);
# pip-compile comes with the dev tools of an existing .venv (not through $(STAMP): the old lock
# may contradict the new ranges).
lock:
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile pyproject.toml  # [tool.pip-tools]

# Local development settings, explicitly: production (DEBUG off, SECRET_KEY required) is the default.
run: $(STAMP)
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py runlocal

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

screenshots: $(STAMP)
	PONAS_SCREENSHOTS=$(CURDIR)/test-artifacts/screenshots $(BIN)/python -m pytest -q tests/browser -m slow

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-logo
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	for b in bench/[!_]*.py; do echo "== $$b"; $(BIN)/python $$b --quick || exit 1; done

clean:
	rm -rf var .pytest_cache .ruff_cache .hypothesis
