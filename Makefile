# make demo   - set up the environment if needed and run the main job (renders into outputs/demo)
# make test   - set up the environment if needed and run the test suite
# make bench  - rasteriser benchmark (JSON)
# make env    - only set up the environment (prints the venv path)
SHELL := /bin/bash
export PYTHONPATH := $(CURDIR)

.PHONY: env demo test bench

env:
	@scripts/env.sh

demo:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m faceflow render --out outputs/demo

test:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m pytest -q $(PYTEST_ARGS)

bench:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m faceflow.bench render --json
