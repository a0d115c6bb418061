# Two entry points: `make pipeline` and `make test`. Both set up .venv first (scripts/setup.sh).
VENV := .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
# LFW_ARCHIVE=path/to/lfw.tgz (relative to this folder, pairs.txt beside it) sets the param
# download.local_archive through `dvc exp run -S`, so that dvc.lock records which archive was used and
# switching archives reruns the download. STAGE=name stops at that stage.
STAGE ?=

.PHONY: setup pipeline test

setup:
	@scripts/setup.sh

pipeline: setup
ifdef LFW_ARCHIVE
	dvc exp run $(STAGE) -S download.local_archive=$(LFW_ARCHIVE)
else
	dvc repro $(STAGE)
endif

test: setup
	python -m pytest $(PYTEST_ARGS)
