# The two commands of the README: `make demo` runs the example site, `make test` runs
# every check. Both install what they need first (scripts/bootstrap.sh).
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap demo test lint catalogs

bootstrap:
	scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/flask --app examples/newsroom/app.py run --port $${PORT:-5000}

lint: bootstrap
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint
	$(PY) -m pytest --cov --cov-report=term:skip-covered

# Re-extract messages and merge them into the fr/en catalogs (then translate, and check
# that `make test` passes: a missing or fuzzy translation fails it).
catalogs: bootstrap
	$(VENV)/bin/pybabel extract -F babel.cfg -k N_ --sort-output --project consentkit \
	  --copyright-holder "consentkit contributors" -o src/consentkit/translations/consentkit.pot .
	$(VENV)/bin/pybabel update -D consentkit -i src/consentkit/translations/consentkit.pot \
	  -d src/consentkit/translations --width 100

# Production checks with real servers (a private PostgreSQL, gunicorn; loopback only). Each
# prints its figures and records them in benchmarks/RESULTS.md.
.PHONY: load-test outage-test
load-test: bootstrap
	$(PY) benchmarks/load_test.py --write

outage-test: bootstrap
	$(PY) benchmarks/outage_test.py --write

# The performance targets (benchmarks/run.py): each prints measured, target, PASS/FAIL and
# the full-size run rewrites its section of benchmarks/RESULTS.md.
.PHONY: bench
bench: bootstrap
	$(PY) benchmarks/run.py
