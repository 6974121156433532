# `make run` and `make test` do all the set-up on a fresh machine: venv, install, then the work.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONFIG  ?=

.PHONY: install lock run test test-fast bench ui docs clean

$(STAMP): pyproject.toml Makefile requirements.lock requirements-nodeps.lock
	$(PY) -m venv $(VENV)
	# exactly the locked versions, hash-checked; --no-deps because the lock is already complete
	# (and holds the CPU build of torch: a looser requirement would pull gigabytes of CUDA packages)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock -r requirements-nodeps.lock
	# the project itself, editable, built with the locked setuptools
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# refresh requirements.lock after changing pyproject.toml's dependencies: existing pins are kept
# unless pyproject rules them out (`make lock ARGS=--upgrade` moves everything to the newest);
# then `make install` and `make test` (tests/test_lock.py checks pyproject, lock and venv agree)
lock:
	test -x $(BIN)/pip || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet pip-tools==7.5.1
	$(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras --extra dev \
	    --output-file requirements.lock $(ARGS) pyproject.toml

run: $(STAMP)
	$(BIN)/refinery run $(if $(CONFIG),--config $(CONFIG))

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	# the benchmark references (the bench extra) beside the locked set, which they may not move
	grep -E '^[A-Za-z0-9].*==' requirements.lock | sed 's/ *\\$$//' > $(VENV)/constraints.txt
	$(BIN)/pip install --quiet --no-build-isolation -c $(VENV)/constraints.txt -e '.[bench]'
	$(BIN)/python -m bench.dedup --docs 20000 --json bench/out/dedup.json
	$(BIN)/python -m bench.quality --docs 2225 --json bench/out/quality.json

ui: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start

# regenerate docs/configuration.md's reference (between its config-reference markers) from the
# pydantic config models; tests/test_config.py fails when the file and the models disagree
docs: $(STAMP)
	$(BIN)/python -c "import pathlib; from refinery.tasks.config import config_reference as ref; \
	p = pathlib.Path('docs/configuration.md'); s = p.read_text(); \
	a, b = s.index('<!-- config-reference:start'), s.index('<!-- config-reference:end -->'); \
	a = s.index('\n', a) + 1; p.write_text(s[:a] + ref() + s[b:])"

clean:
	rm -rf refinery-data
