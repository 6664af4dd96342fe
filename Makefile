# yuqing — the two commands a user needs are `make demo` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
PYTEST_ARGS ?=
# the shared training data (holds twitter-financial-news-sentiment/); never committed
DATA_DIR ?= ../shared/data
# make model-pack CHECKPOINT=var/models/versions/<version>: pack that one instead of production
CHECKPOINT ?=

.PHONY: help venv stack stack-down test test-unit demo model teacher model-train model-train-zh model-pack model-pack-zh model-quant-zh model-pair model-pair-zh bench lint clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] >= (3, 11) else "yuqing needs Python >= 3.11: set PYTHON=/path/to/python3.11")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,train,cpu-opt,plot]'
	@touch $@

venv: $(VENV)/.installed  ## create .venv with all dependencies

stack:  ## start Kafka, Elasticsearch and Redis natively (ops/stack up)
	ops/stack up

stack-down:  ## stop what `make stack` started
	ops/stack down

test: venv stack  ## from a clean clone: venv, the real stack, then the whole test suite
	$(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; exit 0; fi; exit $$rc; }

test-unit: venv  ## unit tests only (no services needed)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

model: venv  ## install the shipped production models (models/shipped/en, models/shipped/zh) into var/models: trains nothing; skipped when installed
	$(PY) -m models.ship install --registry var/models --lang en
	@if [ -d models/shipped/zh ]; then $(PY) -m models.ship install --registry var/models --lang zh; fi

teacher: venv  ## fine-tune the all-mpnet-base-v2 teacher on DATA_DIR (top 2 layers; ~70 min on 2 cores) -> var/teacher
	$(PY) -m models.finetune.teacher --data-dir $(DATA_DIR) --out var/teacher

model-train: venv  ## train the student from DATA_DIR (distilled from var/teacher when present), register, promote through the gate (~30-45 min on 2 cores)
	$(PY) -m models.finetune.make_production --data-dir $(DATA_DIR) --registry var/models --force \
	  $(if $(wildcard var/teacher/soft_targets.npz),--teacher var/teacher --epochs 1.2,)

model-train-zh: venv  ## train the Chinese model (bge-small-zh from Maven) from DATA_DIR, register as zh, promote through the zh gate (~65 min, then ~40 min for its entity pair model, on one core)
	$(PY) -m models.finetune.make_production_zh --data-dir $(DATA_DIR) --registry var/models --force --threads 1

model-pack-zh: venv  ## repack models/shipped/zh from var/models' zh production model (or CHECKPOINT=dir), then model-quant-zh
	$(PY) -m models.ship pack $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),--registry var/models --lang zh) \
	  --out models/shipped/zh
	$(MAKE) model-quant-zh

ZH_CHECKPOINT = $(or $(CHECKPOINT),var/models/$(shell $(PY) -c "import json;print(json.load(open('var/models/production-zh.json'))['path'])" 2>/dev/null))
model-pair-zh: venv  ## train the zh entity pair model (which entity a negative is about) on the zh production model and write it into models/shipped/zh (~25 min on 2 cores), then model-quant-zh
	@test -f "$(ZH_CHECKPOINT)/yuqing_model.json" || { echo "no zh checkpoint at '$(ZH_CHECKPOINT)': run make model (or pass CHECKPOINT=dir)"; exit 2; }
	$(PY) -m models.finetune.entity_pair --checkpoint $(ZH_CHECKPOINT) --data-dir $(DATA_DIR) \
	  --shipped models/shipped/zh
	$(MAKE) model-quant-zh

model-quant-zh: venv  ## measure onnx-int8 against fp32 on the zh held-out sets; record it as the model's CPU backend when it holds
	@test -f "$(ZH_CHECKPOINT)/yuqing_model.json" || { echo "no zh checkpoint at '$(ZH_CHECKPOINT)': run make model (or pass CHECKPOINT=dir)"; exit 2; }
	$(PY) -m models.finetune.quant_check --checkpoint $(ZH_CHECKPOINT) --backend onnx-int8 \
	  --data-dir $(DATA_DIR) --write --shipped models/shipped/zh; rc=$$?; \
	  if [ $$rc -eq 1 ]; then echo "onnx-int8 did not hold for this model: auto serves it on ONNX fp32"; \
	  elif [ $$rc -ne 0 ]; then exit $$rc; fi

EN_CHECKPOINT = $(or $(CHECKPOINT),var/models/$(shell $(PY) -c "import json;print(json.load(open('var/models/production.json'))['path'])" 2>/dev/null))
model-pair: venv  ## train the English entity pair model (each entity's own label where a text names several) on the production model and write it into models/shipped/en (~30 min on one core)
	@test -f "$(EN_CHECKPOINT)/yuqing_model.json" || { echo "no English checkpoint at '$(EN_CHECKPOINT)': run make model (or pass CHECKPOINT=dir)"; exit 2; }
	$(PY) -m models.finetune.entity_pair_en --checkpoint $(EN_CHECKPOINT) --data-dir $(DATA_DIR) \
	  --threads 1 --shipped models/shipped/en

model-pack: venv  ## repack models/shipped/en from var/models' production model (or CHECKPOINT=dir); agreement checked on valid.csv
	$(PY) -m models.ship pack $(if $(CHECKPOINT),--checkpoint $(CHECKPOINT),--registry var/models) \
	  --out models/shipped/en \
	  $$(f=$(DATA_DIR)/twitter-financial-news-sentiment/valid.csv; [ -f $$f ] && echo --agreement-data $$f)

demo: venv stack model  ## the demo on this machine from nothing: stack, workers, synthetic feed, live trends and alerts
	$(VENV)/bin/yuqing demo

bench: venv stack  ## benchmarks: inference (beside the HF pipeline), the pipeline, alerts on real series; tables + bench/results/*.json
	$(VENV)/bin/yuqing bench inference
	@if [ -f var/models/production-zh.json ]; then $(VENV)/bin/yuqing bench inference --lang zh; fi
	$(VENV)/bin/yuqing bench pipeline
	@if [ -d "$(DATA_DIR)/nab-realtweets-dev" ]; then $(VENV)/bin/yuqing bench alerts --series $(DATA_DIR)/nab-realtweets-dev; \
	else echo "bench alerts skipped: $(DATA_DIR)/nab-realtweets-dev not found (DATA_DIR=...)"; fi

lint:  ## ruff
	$(VENV)/bin/ruff check services models tests bench

clean:  ## remove the venv and local state (not the stack install)
	rm -rf $(VENV) var
