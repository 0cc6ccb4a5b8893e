# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO ?= 1
PYTEST_ARGS ?=

.PHONY: run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.run-installed: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

EXAMPLE_PLUGIN := $(wildcard tests/example_plugin/setup.cfg tests/example_plugin/helpdesk_example_chat/*.py tests/example_plugin/helpdesk_example_chat/templates/*/*.html tests/example_pager/setup.cfg tests/example_pager/helpdesk_example_pager/*.py tests/example_step/setup.cfg tests/example_step/helpdesk_example_step/*.py)

$(VENV)/.test-installed: $(BIN)/python setup.cfg pyproject.toml $(EXAMPLE_PLUGIN)
	$(BIN)/python -m pip install --quiet -e '.[test,postgres,redis]'
	# A real installed distribution, found through its entry point by tests/test_plugins.py.
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps ./tests/example_plugin ./tests/example_pager ./tests/example_step
	touch $@ $(VENV)/.run-installed

run: $(VENV)/.run-installed
	$(BIN)/helpdesk init $(if $(filter 0,$(DEMO)),--no-demo,--demo)
	$(BIN)/helpdesk serve

lint: $(VENV)/.test-installed
	$(BIN)/ruff check helpdesk plugins tests bench

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache
