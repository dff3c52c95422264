# sealflow: `make run` serves HTTPS on 127.0.0.1:8443; `make test` runs every check.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= .sealflow
STAMP  := $(VENV)/.installed
# The OAuth tests' authorization server (npm oidc-provider); the stamp lives in the
# gitignored node_modules, which `npm ci` recreates from the committed lockfile.
OIDC       := tests/support/oidc
OIDC_STAMP := $(OIDC)/node_modules/.installed

.PHONY: run test install lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# Without Node.js the OAuth tests skip; with it, a failing `npm ci` fails the build.
$(OIDC_STAMP): $(OIDC)/package.json $(OIDC)/package-lock.json
	@if command -v node >/dev/null; then \
		cd $(OIDC) && npm ci --no-audit --no-fund && touch node_modules/.installed; \
	else echo "node not found: the OAuth tests will be skipped"; fi

run: install
	$(BIN)/sealflow --data-dir $(DATA) init
	$(BIN)/sealflow --data-dir $(DATA) serve

lint: install
	$(BIN)/ruff check src tests bench

typecheck: install
	$(BIN)/mypy

pytest: install $(OIDC_STAMP)
	$(BIN)/pytest -q -p no:cacheprovider

test: lint typecheck pytest

bench: install
	$(BIN)/python bench/webhook.py

clean:
	rm -rf $(VENV) build *.egg-info
