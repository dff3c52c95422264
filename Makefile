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

.PHONY: run test install lint typecheck pytest postgres-binaries pytest-postgres bench clean

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

pytest: install $(OIDC_STAMP) postgres-binaries
	$(BIN)/pytest -q -p no:cacheprovider

# The storage-dependent tests again, on a throwaway PostgreSQL 15 cluster (tests/support/
# postgres.py): started here as the postgres user on 127.0.0.1 and a socket under /tmp, stopped
# by the trap whatever pytest says. Cells and key stores on PostgreSQL; only the tests listed
# in $(PG_SELECTION) (those that pass on PostgreSQL today; the file says why others are not).
PG_BIN       ?= /usr/lib/postgresql/15/bin
PG_SELECTION := tests/postgres_selection.txt

postgres-binaries:
	@test -x $(PG_BIN)/initdb || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-15; }

pytest-postgres: install postgres-binaries
	@dir=$$(mktemp -d /tmp/sealflow-pg.XXXXXX) || exit 1; \
	trap '$(BIN)/python -m tests.support.postgres stop "'"$$dir"'"' EXIT; \
	trap 'exit 130' INT TERM; \
	SEALFLOW_TEST_PG_BIN=$(PG_BIN) $(BIN)/python -m tests.support.postgres start "$$dir" || exit 1; \
	began=$$(date +%s); \
	SEALFLOW_TEST_BACKEND=postgres SEALFLOW_TEST_PG_KEYSTORE=1 SEALFLOW_TEST_PG_DSN="$$(cat "$$dir/dsn")" \
	SEALFLOW_TEST_PG_SELECTION=$(PG_SELECTION) SEALFLOW_TEST_PG_BIN=$(PG_BIN) \
		$(BIN)/pytest -q -p no:cacheprovider \
		$$(sed -e 's/#.*//' -e '/^[[:space:]]*-/d' -e 's/::.*//' $(PG_SELECTION) | sort -u); \
	status=$$?; echo "PostgreSQL run: $$(( $$(date +%s) - began )) s"; exit $$status

test: lint typecheck pytest pytest-postgres

bench: install
	$(BIN)/python bench/webhook.py

clean:
	rm -rf $(VENV) build *.egg-info
