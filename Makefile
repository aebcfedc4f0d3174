# The two commands of the README: `make run` and `make test`.
PY := .venv/bin/python
SONG ?= resources/examples/example.wav
MODEL ?=

.PHONY: run test test-all lint setup setup-test bench

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

run: setup
	$(PY) -m stemgui $(SONG) $(if $(MODEL),--model $(MODEL))

test: setup-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q

lint: setup-test
	.venv/bin/ruff check .

test-all: setup-test
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m ''
