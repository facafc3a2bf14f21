# make demo   - set up the environment if needed and run the main job: render the synthetic demo into
#               outputs/demo, annotate the first 50 frames of a real clip into outputs/annotate and
#               estimate the 3D flow between two of its frames with the shipped weights into outputs/flow
#               (DEMO_VIDEO, default: the Obama clip of ../shared/media; skipped with a note if absent)
# make test   - set up the environment if needed and run the test suite
# make bench  - rasteriser benchmark (JSON)
# make env    - only set up the environment (prints the venv path)
SHELL := /bin/bash
export PYTHONPATH := $(CURDIR)

.PHONY: env demo test bench

env:
	@scripts/env.sh

DEMO_VIDEO ?= $(or $(FACEFLOW_MEDIA),$(CURDIR)/../shared/media)/videos/EDTalk_uncrop_Obama.mp4

demo:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m faceflow render --out outputs/demo && \
	if [ -f "$(DEMO_VIDEO)" ]; then \
		"$$venv/bin/python" -m faceflow annotate "$(DEMO_VIDEO)" outputs/annotate --max-frames 50 && \
		"$$venv/bin/python" -m faceflow flow "$(DEMO_VIDEO):0" "$(DEMO_VIDEO):8" --out outputs/flow; \
	else echo "note: $(DEMO_VIDEO) not found; set DEMO_VIDEO=clip.mp4 to annotate a real video"; fi

test:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m pytest -q $(PYTEST_ARGS)

bench:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m faceflow.bench render --json
