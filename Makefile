# Two entry points: `make pipeline` and `make test`. Both set up .venv first (scripts/setup.sh).
VENV := .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)
# LFW_ARCHIVE=path/to/lfw.tgz uses a local archive (pairs.txt and SHA256SUMS beside it) instead of
# downloading; it is passed to the download stage as IVFG_LFW_ARCHIVE.
ifdef LFW_ARCHIVE
export IVFG_LFW_ARCHIVE := $(abspath $(LFW_ARCHIVE))
endif
STAGE ?=

.PHONY: setup pipeline test

setup:
	@scripts/setup.sh

pipeline: setup
	dvc repro $(STAGE)

test: setup
	python -m pytest $(PYTEST_ARGS)
