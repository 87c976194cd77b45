# Two entry points, both self-contained: they create (or reuse) .venv and install concurry[dev] into it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: tour test test-pythons bench lint docs docs-serve

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

tour: $(STAMP)
	$(PY) -m concurry

# Two test processes: much of the suite waits (sleeps, child start-ups), so two overlap well on
# two cores; the tests assert order and counts, never speed, so they hold under that load.
# The Ray tests share one local Ray, so they run in one process (--dist loadgroup, conftest.py).
# Bytecode is written first: the checkout is installed editable, and where PYTHONDONTWRITEBYTECODE
# is set, every process and Ray actor the suite starts would compile concurry from source again
# (about 45 ms each; the suite runs about 15 % faster with it written).
test: $(STAMP)
	$(PY) -m ruff check src tests benchmarks noxfile.py
	$(PY) -m compileall -q src/concurry
	$(PY) -m pytest -n 2 --dist loadgroup

# The suite (no lint) on every Python 3.10-3.13 found, each in its own venv under .nox/
# (see noxfile.py); ARGS go to pytest; SKIP lists versions to leave out (e.g. SKIP=3.11).
test-pythons: $(STAMP)
	TEST_PYTHONS_SKIP="$(SKIP)" $(PY) -m nox -f noxfile.py -- $(ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run.py --json benchmarks/results.json

lint: $(STAMP)
	$(PY) -m ruff check src tests benchmarks noxfile.py

# The user guide: charts.py renders docs/charts/*.png and docs/generated/*.md from the benchmark
# results, then the site is built into site/ (strict: a broken link or reference fails the build).
docs: $(STAMP)
	$(PY) benchmarks/charts.py
	$(PY) -m mkdocs build --strict -d site

docs-serve: $(STAMP)
	$(PY) benchmarks/charts.py
	$(PY) -m mkdocs serve
