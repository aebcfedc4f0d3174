# The two commands of the README: `make run` and `make test`.
PY := .venv/bin/python
SONG ?= resources/examples/example.wav
MODEL ?=

.PHONY: run test test-all lint setup setup-test bench wheel bundle bundle-check install-desktop uninstall-desktop

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

# Packaging (see README, "Just the app"). Artefacts go to dist/ and build/ (ignored by git).
wheel: setup
	$(PY) -m pip wheel -q --no-deps --no-build-isolation -w dist .

bundle: setup
	$(PY) -m pip install -q --disable-pip-version-check -r requirements/bundle.txt
	nice $(PY) -m PyInstaller --noconfirm --clean --log-level WARN --distpath dist --workpath build/pyinstaller \
		packaging/stemgui.spec
	@du -sh dist/stemgui

bundle-check: bundle
	scripts/bundle_check.sh

# The launcher, icons and AppStream metainfo for this user ($$XDG_DATA_HOME); EXEC=dist/stemgui/stemgui for the bundle.
install-desktop: setup
	QT_QPA_PLATFORM=offscreen $(PY) packaging/install_desktop.py $(if $(EXEC),--exec $(EXEC))

uninstall-desktop:
	$(PY) packaging/install_desktop.py --uninstall
