# kmatrix: the Linux kernel's configuration workflow for experiment matrices.
# Every target is a thin call into one Python entry point; `make help` lists them.
# `make V=1` shows the commands; `PYTHON=python3 make ...` uses a ready environment
# (e.g. a GPU box with torch preinstalled) instead of creating .venv.

.DEFAULT_GOAL := run
SHELL := /bin/bash

ALLOWED_IN_VERSION := a b c d e f g h i j k l m n o p q r s t u v w x y z 0 1 2 3 4 5 6 7 8 9 . +
# The variables a user types are read with $(value ...), never expanded, and never
# exported to a recipe's shell: V, FULL and FORCE only ever count as "1" or not; SET,
# DEFCONFIG and CELL reach Python through the environment (below); TORCH_VERSION must be
# a version number. PYTHON is a command, and is run as one. (The torch the set-up installs
# gets its default before `unexport`, which would define it empty and leave ?= nothing.)
TORCH_VERSION ?= 2.13.0
unexport V FULL FORCE TORCH_VERSION
ifeq ($(value V),1)
Q :=
else
Q := @
endif
_torch_version := $(value TORCH_VERSION)
_torch_rest := $(_torch_version)
$(foreach c,$(ALLOWED_IN_VERSION),$(eval _torch_rest := $$(subst $(c),,$$(_torch_rest))))
ifneq ($(strip $(_torch_rest))$(filter-out 1,$(words $(_torch_version))),)
$(error TORCH_VERSION: '$(_torch_version)' is not a version number (fix: e.g. TORCH_VERSION=2.13.0))
endif

# Set-up: with no PYTHON given, .venv is (re)built whenever pyproject.toml changes.
# `make test` also installs the ray extra, so the Ray tests run as they do in CI.
ifeq ($(origin PYTHON),undefined)
PYTHON := .venv/bin/python
SETUP := .venv/.installed
TEST_SETUP := .venv/.installed-ray
else
SETUP :=
TEST_SETUP :=
endif

# pip's own lines say what it fetches and installs; scripts/heartbeat.py adds a line
# whenever pip is silent for 30 s (unpacking torch is), so a log never goes quiet.
PIP = scripts/heartbeat.py
.venv/.installed: pyproject.toml
	@echo "  SETUP   first run: building .venv (minutes, mostly torch's download; later runs"
	@echo "          skip this)"
	$(Q)test -x .venv/bin/python || python3 -m venv .venv
	$(Q)python3 $(PIP) "upgrading pip" .venv/bin/python -m pip install --upgrade pip
	@echo "  SETUP   installing torch==$(TORCH_VERSION) (on a machine without CUDA: the CPU build)"
	$(Q)python3 $(PIP) "installing torch" .venv/bin/python -m pip install "torch==$(TORCH_VERSION)"
	@echo "  SETUP   installing kmatrix with kconfiglib, wandb, datasets, tiktoken, matplotlib..."
	$(Q)python3 $(PIP) "installing kmatrix's dependencies" \
		.venv/bin/python -m pip install -e ".[dev]"
	$(Q)touch $@
	@echo "  SETUP   .venv ready"

.venv/.installed-ray: .venv/.installed
	@echo "  SETUP   installing the ray extra for the Ray executor's tests"
	$(Q)python3 $(PIP) "installing ray" .venv/bin/python -m pip install -e ".[dev,ray]"
	$(Q)touch $@

# Configuration: .config (Kconfig) -> config.py + config.json (typed values).
KCONFIGS := Kconfig $(wildcard */Kconfig)
DEFCONFIGS := $(sort $(notdir $(wildcard defconfigs/*)))
DEFCONFIG_TARGETS := $(addprefix defconfig-,$(DEFCONFIGS))

.config: | $(SETUP)
	@echo "  CONF    no .config yet: loading defconfigs/default"
	$(Q)$(PYTHON) scripts/config.py defconfig default

# A variant set's directory (a fragment added or removed) and its fragments (one edited).
VARIANT_FILES := $(wildcard variants/* variants/*/*.config)
config.json: .config $(KCONFIGS) $(VARIANT_FILES) | $(SETUP)
	$(Q)$(PYTHON) scripts/config.py genconfig

config.py: config.json

# What a user types (a defconfig name, SET, DEFCONFIG, CELL) reaches Python through the
# environment, unexpanded: neither make nor the shell ever evaluates it. (make would
# expand a command-line variable to export it, hence the unexport.)
unexport SET DEFCONFIG CELL
.PHONY: $(DEFCONFIG_TARGETS)
$(DEFCONFIG_TARGETS): defconfig-%: | $(SETUP)
	$(Q)$(PYTHON) scripts/config.py defconfig

# Any other name: the same command, which lists the defconfigs and the closest name.
defconfig-%: export KMATRIX_ARG = $*
defconfig-%: | $(SETUP)
	$(Q)$(PYTHON) scripts/config.py defconfig

.PHONY: list-defconfigs lint-defconfigs menuconfig olddefconfig savedefconfig setconfig
list-defconfigs:
	@printf '%s\n' $(DEFCONFIGS)

lint-defconfigs: | $(SETUP)
	$(Q)$(PYTHON) scripts/config.py lint

# A value the menu takes but the typed check refuses is not kept: .config is restored.
menuconfig: .config | $(SETUP)
	$(Q)$(PYTHON) scripts/config.py menuconfig

olddefconfig: .config | $(SETUP)
	$(Q)$(PYTHON) scripts/config.py genconfig

savedefconfig: export KMATRIX_ARG := $(if $(value DEFCONFIG),$(value DEFCONFIG),defconfig)
savedefconfig: config.json
	$(Q)$(PYTHON) scripts/config.py savedefconfig

setconfig: export KMATRIX_ARG := $(value SET)
setconfig: .config | $(SETUP)
	$(Q)$(PYTHON) scripts/config.py setconfig

# The matrix.
MATRIX = $(PYTHON) scripts/matrix.py $(if $(filter 1,$(value FORCE)),--force)
.PHONY: run plan check estimate summary repro-check clean-results
run: config.json
	$(Q)$(MATRIX) run

plan: config.json
	$(Q)$(MATRIX) plan $(if $(filter 1,$(value FULL)),--full)

check: config.json
	$(Q)$(MATRIX) check $(if $(filter 1,$(value FULL)),--full)

estimate: config.json
	$(Q)$(MATRIX) estimate

summary: config.json
	$(Q)$(MATRIX) summary

repro-check: export KMATRIX_ARG := $(value CELL)
repro-check: config.json
	$(Q)$(MATRIX) repro-check

clean-results: config.json
	$(Q)$(MATRIX) clean-results

# Benchmarks on the CPU (bench/README.md): each writes its JSON under BENCH_OUT, the GPU
# ones run on lent machines by hand. The make-driven ones run in a scratch copy.
BENCH_OUT ?= bench/results
.PHONY: bench-cpu
bench-cpu: | $(SETUP)
	$(Q)$(PYTHON) bench/fractal_bench.py --quick --out $(BENCH_OUT)/fractal_bench_cpu.json
	$(Q)$(PYTHON) bench/dimension_estimators.py --out $(BENCH_OUT)/dimension_estimators.json
	$(Q)$(PYTHON) bench/driver_overhead.py --cells 400 --out $(BENCH_OUT)/driver_overhead.json
	$(Q)$(PYTHON) bench/driver_scale.py --out $(BENCH_OUT)/driver_scale.json
	$(Q)$(PYTHON) bench/llm_grid.py --defconfig fractal-16x16 --gpus auto \
		--set "SWEEP_X_POINTS=4 SWEEP_Y_POINTS=4" --out $(BENCH_OUT)/llm_grid_cpu.json
	$(Q)$(PYTHON) bench/estimate_check.py --out $(BENCH_OUT)/estimate_check.json \
		default gpt2-tiny-cpu fractal-16x16

# Development.
.PHONY: test test-fast format clean distclean help
# tests/pytest_heartbeat.py names a test that runs long, so the output never goes silent.
test: | $(TEST_SETUP)
	$(Q)$(PYTHON) -m pytest -p tests.pytest_heartbeat

# The fast subset (no training, make, Ray or kernels; tests/conftest.py): under a minute.
test-fast: | $(SETUP)
	$(Q)$(PYTHON) -m pytest -p tests.pytest_heartbeat -m "not slow"

format: | $(SETUP)
	$(Q)$(PYTHON) -m black .

clean:
	$(Q)rm -rf .pytest_cache build *.egg-info
	$(Q)find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean
	$(Q)rm -rf .venv .config .config.old config.py config.json

help:
	@echo 'Configuration:'
	@echo '  defconfig-<name>  - lint defconfigs/<name>, then load it into .config (tab completes)'
	@echo '  list-defconfigs   - list the defconfigs in defconfigs/'
	@echo '  lint-defconfigs   - lint every defconfig: file:line: problem, non-zero on any'
	@echo '  menuconfig        - edit .config in a menu; a value the check refuses is not kept'
	@echo '  olddefconfig      - fill new symbols with defaults, regenerate config.py'
	@echo '  setconfig SET=".." - set symbols from the command line, e.g. SET="SWEEP_X_POINTS=32"'
	@echo '  savedefconfig     - write a minimal defconfig to ./defconfig (DEFCONFIG=path)'
	@echo 'Matrix:'
	@echo '  run (default)     - run every cell: one worker per GPU, resume, retries, summary'
	@echo '  plan              - print the cells (ids, axis values) without running anything;'
	@echo '                      FULL=1 lists every cell'
	@echo '  check             - dry-run (tiny model, one step, on the CPU) cells that hold every'
	@echo '                      value of every axis: a grid'"'"'s diagonal and corners; FULL=1: all'
	@echo '  estimate          - cell count, steps/tokens and a time estimate from probe cells,'
	@echo '                      valid for the machine'"'"'s load while it probes'
	@echo '  summary           - re-render figures, summary.json, results.csv from results'
	@echo '  repro-check       - run one cell (CELL=id) twice and on every GPU, compare bitwise'
	@echo '  clean-results     - delete results/<name>/ of the current configuration'
	@echo 'Development:'
	@echo '  test              - run the test suite (pytest)'
	@echo '  test-fast         - the tests not marked slow (under a minute)'
	@echo '  bench-cpu         - the CPU benchmarks (bench/README.md), JSON into BENCH_OUT'
	@echo '  format            - format all Python with black'
	@echo '  clean / distclean - remove caches / also .venv and the configuration'
	@echo '  help              - this list'
	@echo 'Variables: V=1 (verbose), FULL=1 (plan, check: every cell), FORCE=1 (reuse a'
	@echo '  results dir made with another configuration), PYTHON=python3 (skip .venv'
	@echo '  set-up), TORCH_VERSION=$(TORCH_VERSION)'
