# make demo   - set up the environment if needed and run the main job: render the synthetic demo into
#               outputs/demo, annotate the first 50 frames of a real clip into outputs/annotate,
#               estimate the 3D flow between two of its frames with the shipped weights into outputs/flow
#               (DEMO_VIDEO, default: the Obama clip of ../shared/media; skipped with a note if absent),
#               then open the Gradio app on http://127.0.0.1:7860 (Ctrl-C stops it; APP=0 skips it)
# make app    - only open the Gradio app (APP_ARGS="--port 7861" etc.)
# make test   - set up the environment if needed and run the test suite
# make bench  - rasteriser benchmark (JSON)
# make env    - only set up the environment (prints the venv path)
SHELL := /bin/bash
export PYTHONPATH := $(CURDIR)

.PHONY: env demo app test bench

APP ?= 1
APP_ARGS ?=

env:
	@scripts/env.sh

DEMO_VIDEO ?= $(or $(FACEFLOW_MEDIA),$(CURDIR)/../shared/media)/videos/EDTalk_uncrop_Obama.mp4

demo:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m faceflow render --out outputs/demo && \
	if [ -f "$(DEMO_VIDEO)" ]; then \
		"$$venv/bin/python" -m faceflow annotate "$(DEMO_VIDEO)" outputs/annotate --max-frames 50 && \
		"$$venv/bin/python" -m faceflow flow "$(DEMO_VIDEO):0" "$(DEMO_VIDEO):8" --out outputs/flow; \
	else echo "note: $(DEMO_VIDEO) not found; set DEMO_VIDEO=clip.mp4 to annotate a real video"; fi && \
	if [ "$(APP)" != "0" ]; then "$$venv/bin/python" -m apps.gradio_app $(APP_ARGS); fi

app:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m apps.gradio_app $(APP_ARGS)

test:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m pytest -q $(PYTEST_ARGS)

bench:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m faceflow.bench render --json
