# Two entry points: `make pipeline` and `make test`. Both set up .venv first (scripts/setup.sh).
VENV := .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
# LFW_ARCHIVE=path/to/lfw.tgz (relative to this folder, pairs.txt beside it) sets the param
# download.local_archive through `dvc exp run -S` (plain `dvc repro` when it already names that
# archive), so that dvc.lock records which archive was used and switching archives reruns the
# download. STAGE=name stops at that stage.
STAGE ?=

.PHONY: setup pipeline test mlflow-ui

setup:
	@scripts/setup.sh

pipeline: setup
ifdef LFW_ARCHIVE
	@# Only a different archive goes through `dvc exp run -S` (which also rewrites params.yaml in DVC's style).
	@if [ "$$(python -c 'import yaml; print(yaml.safe_load(open("params.yaml"))["download"]["local_archive"])')" = "$(LFW_ARCHIVE)" ]; \
	then echo "dvc repro $(STAGE)"; dvc repro $(STAGE); \
	else echo "dvc exp run $(STAGE) -S download.local_archive=$(LFW_ARCHIVE)"; dvc exp run $(STAGE) -S download.local_archive=$(LFW_ARCHIVE); fi
else
	dvc repro $(STAGE)
endif

test: setup
	python -m pytest $(PYTEST_ARGS)

mlflow-ui: setup
	python scripts/mlflow_ui.py $(if $(PORT),--port $(PORT))
