# Set-up and the two entry points of the README. `make install` is idempotent:
# it rebuilds .venv only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	# torch first, pinned: 2.13.0 resolves to the CPU wheel here; see README for CUDA
	$(VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	. $(VENV)/bin/activate && snakemake --cores all results/table1.csv

test: $(STAMP)
	. $(VENV)/bin/activate && python -m pytest

clean:
	rm -rf results/synthetic results/ict results/table1.* results/table2.* results/figures .snakemake
