# The two commands of the README:
#   make quickstart   install, then train + evaluate the default model on synthetic `shapes`
#   make test         install, then run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
QUICKSTART_CONFIG ?= configs/Shapes/iou_aware_retinanet_slim_R_FPN.yaml
QUICKSTART_OUTPUT ?= output/quickstart

.PHONY: install quickstart test lint

install:
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/install.sh

quickstart: install
	$(PY) train_net.py --config-file $(QUICKSTART_CONFIG) OUTPUT_DIR $(QUICKSTART_OUTPUT)
	$(PY) tools/visualize_json_results.py \
		--input $(QUICKSTART_OUTPUT)/inference/shapes_val/coco_instances_results.json \
		--dataset shapes_val --output $(QUICKSTART_OUTPUT)/visualizations --num-images 8

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
