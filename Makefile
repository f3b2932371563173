# Two set-up commands: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch 2.13.0 is on these machines; an unpinned torch pulls a multi-GB CUDA build.
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint clean image

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	# NLB's own metric code, which tests/test_nlb.py checks ours against. Without its pins: they
	# ask for a pandas with no wheel for this Python, and its evaluation module needs only numpy,
	# scipy, scikit-learn and h5py, all installed above. (Its wheel also installs a top-level
	# `tests` package: our tests import their conftest by name, never as `tests.`.)
	$(BIN)/python -m pip install -q --no-deps "nlb_tools==0.0.4"
	touch $(STAMP)

# AutoLFADS on the built-in Lorenz data, sized for ~10 minutes on 2 CPU cores (6 workers, up to
# 8 generations of 8 epochs; the plateau rule usually stops it a generation or two earlier).
demo: $(STAMP)
	$(BIN)/autolfads run --out runs/demo --force --population 6 --generations 8 --epochs-per-generation 8

# Two pytest workers: most of the suite waits (on Ray starting, on its multi-host tests), so the
# second core fills that time; the multi-host tests share one worker (xdist_group).
test: $(STAMP)
	$(BIN)/python -m ruff check src tests bench
	$(BIN)/python -m pytest -n 2 --dist loadgroup

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The optional cluster image (Dockerfile, for `cloud init --image`); push it where the VMs can
# pull it (README: On Google Cloud). linux/amd64: the GCP VMs' platform, also when built on an
# ARM laptop (Apple silicon).
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image:
	docker build --platform linux/amd64 -t autolfads:$(VERSION) .

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
