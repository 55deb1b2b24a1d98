# Two user-facing targets: `make quickstart` and `make test`. Each bootstraps .venv on first use
# (uv when it is on PATH, else python3 -m venv + pip) from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: quickstart test bench clean

$(STAMP): pyproject.toml
	@if command -v uv >/dev/null 2>&1; then \
		uv venv --python $(PYTHON) $(VENV) && uv pip install --python $(PY) -e '.[test]'; \
	else \
		$(PYTHON) -m venv $(VENV) && $(PY) -m pip install -q --upgrade pip && $(PY) -m pip install -q -e '.[test]'; \
	fi
	@touch $(STAMP)

quickstart: $(STAMP)
	$(PY) -m jaxlm.quickstart

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]'
	$(PY) scripts/bench_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
