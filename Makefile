# The workbook's commands. Two matter: `make reproduce` and `make test`.
# Every target creates or refreshes .venv from requirements.txt first.
SHELL := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
KERNEL := fl-workbook
STAMP  := $(VENV)/.installed
CLUSTER_STAMP := $(VENV)/.installed-cluster
PROFILE ?= auto
NB ?=
# where make reproduce runs whole notebooks: local (here, in turn), ray or slurm (docs/cluster.md)
EXECUTOR ?= local
NEEDS_CLUSTER := $(if $(filter ray slurm,$(EXECUTOR) $(WORKBOOK_EXECUTOR)),$(CLUSTER_STAMP))
export WORKBOOK_PROGRESS ?= 0

.PHONY: help venv cluster data reproduce test unit smoke nbval record report lab bench book clean

help:
	@echo "make reproduce [PROFILE=quick|full] [NB=01]  run notebooks headless into runs/<profile>/, then REPORT.md"
	@echo "               [EXECUTOR=ray|slurm]          spread the notebooks over a cluster (docs/cluster.md)"
	@echo "make test                                    unit tests, every notebook's smoke profile, nbval with checked values (quick)"
	@echo "make book                                    the book (docs/) into _build/book/: recorded notebooks, never executed"
	@echo "make lab | record | report | data | bench | clean"

$(STAMP): requirements.txt pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is needed, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (FL workbook)" >/dev/null
	$(PY) -c "import torch, torchvision, lib; print('venv ready: torch', torch.__version__, 'torchvision', torchvision.__version__)"
	touch $(STAMP)

venv: $(STAMP)

# the cluster backends (requirements-cluster.txt), constrained by requirements.txt so torch cannot move
$(CLUSTER_STAMP): $(STAMP) requirements-cluster.txt
	$(PY) -m pip install --quiet -r requirements-cluster.txt -c requirements.txt
	$(PY) -c "import torch, torchvision, ray, submitit; print('cluster backends ready: ray', ray.__version__, 'submitit', submitit.__version__, 'torch', torch.__version__)"
	touch $(CLUSTER_STAMP)

cluster: $(CLUSTER_STAMP)

# data the notebooks need: Debian/PyPI offline sources first, then downloads (scripts/seed_data.py)
data: $(STAMP)
	$(PY) scripts/seed_data.py

smoke: $(STAMP)
	$(PY) scripts/seed_data.py
	$(PY) -m pytest tests/test_smoke.py -p no:cacheprovider

reproduce: $(STAMP) $(NEEDS_CLUSTER)
	-$(PY) scripts/seed_data.py
	$(PY) scripts/reproduce.py --profile $(PROFILE) $(if $(NB),--nb $(NB)) --kernel $(KERNEL) \
		$(if $(filter-out local,$(EXECUTOR)),--executor $(EXECUTOR))

# checked values are compared with their recorded tolerances (notebooks/*.expected.json), not as text
test: $(STAMP) $(CLUSTER_STAMP)
	$(PY) scripts/seed_data.py
	WORKBOOK_CHECKS=check $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg --nbval-cell-timeout 900 -p no:cacheprovider

unit: $(STAMP) $(CLUSTER_STAMP)
	$(PY) -m pytest tests -p no:cacheprovider

record: $(STAMP)
	$(PY) scripts/seed_data.py
	$(PY) scripts/reproduce.py --record $(if $(NB),--nb $(NB)) --kernel $(KERNEL)

# the simulator's speed (benchmarks/bench.py): appends a row per job to benchmarks/results.md
bench: $(STAMP)
	$(PY) scripts/seed_data.py
	$(PY) benchmarks/bench.py

report: $(STAMP)
	$(PY) -m lib.report

# the book: renders the recorded notebooks, runs of record, docs/ and lib's docstrings; executes nothing;
# warnings are errors; MathJax comes from npm's registry into the cache once and is served from the site
book: $(STAMP)
	rm -rf _build/book
	$(VENV)/bin/sphinx-build -b html -W --keep-going -q docs _build/book
	@echo "book: _build/book/index.html"

lab: $(STAMP)
	@if [ "$$(id -u)" = 0 ]; then echo "warning: running JupyterLab as root (--allow-root), as in many workshop containers"; fi
	WORKBOOK_PROGRESS=1 $(VENV)/bin/jupyter lab notebooks/ $$( [ "$$(id -u)" = 0 ] && echo --allow-root )

clean:
	rm -rf runs results/quick results/full _build docs/_gen
