# make demo   - set up the environment if needed and run the main job: render the synthetic demo into
#               outputs/demo, annotate the first 50 frames of a real clip into outputs/annotate,
#               estimate the 3D flow between two of its frames with the shipped weights into outputs/flow
#               (DEMO_VIDEO, default: the Obama clip of ../shared/media; skipped with a note if absent),
#               drive the shipped demo target with DEMO_SOURCE (default: the Trump clip) into
#               outputs/reenact_demo.mp4, then open the Gradio app on http://127.0.0.1:7860 (Ctrl-C stops it; APP=0 skips it)
# make app    - only open the Gradio app (APP_ARGS="--port 7861" etc.)
# make test   - set up the environment if needed and run the whole test suite (what CI runs)
# make test-fast - the same without the tests marked slow (training, whole clips, the app): the
#               developer's loop, about a minute
# make lint   - the lint gate: ruff with the pyproject.toml settings, no import cycle or import
#               against the layers and stages (scripts/import_graph.py), no function over 80 lines
#               without a reason nor module over 600 (scripts/long_functions.py); CI runs it first
# make bench  - rasteriser benchmark (JSON)
# make env    - only set up the environment (prints the venv path)
# make lock   - regenerate requirements.lock from pyproject.toml (needs `uv`: pip install uv)
SHELL := /bin/bash
export PYTHONPATH := $(CURDIR)

.PHONY: env demo app test test-fast lint bench lock

APP ?= 1
APP_ARGS ?=

env:
	@scripts/env.sh

DEMO_VIDEO ?= $(or $(FACEFLOW_MEDIA),$(CURDIR)/../shared/media)/videos/EDTalk_uncrop_Obama.mp4
DEMO_SOURCE ?= $(or $(FACEFLOW_MEDIA),$(CURDIR)/../shared/media)/videos/MimicTalk_Trump_10s.mp4

demo:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/faceflow" render --out outputs/demo && \
	if [ -f "$(DEMO_VIDEO)" ]; then \
		"$$venv/bin/faceflow" annotate "$(DEMO_VIDEO)" outputs/annotate --max-frames 50 --overwrite && \
		"$$venv/bin/faceflow" flow "$(DEMO_VIDEO):0" "$(DEMO_VIDEO):8" --out outputs/flow && \
		"$$venv/bin/faceflow" flow "$(DEMO_VIDEO)" --out outputs/flow_video --max-frames 100 --overwrite; \
	else echo "note: $(DEMO_VIDEO) not found; set DEMO_VIDEO=clip.mp4 to annotate a real video"; fi && \
	if [ -f "$(DEMO_SOURCE)" ]; then \
		"$$venv/bin/faceflow" reenact run demo --mode head --source "$(DEMO_SOURCE)" --out outputs/reenact_demo.mp4 \
			--max-frames 100 --side-by-side; \
	else echo "note: $(DEMO_SOURCE) not found; set DEMO_SOURCE=clip.mp4 to drive the demo target"; fi && \
	if [ "$(APP)" != "0" ]; then "$$venv/bin/faceflow" app $(APP_ARGS); fi

app:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/faceflow" app $(APP_ARGS)

test:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m pytest -q $(PYTEST_ARGS)

lint:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/ruff" check . && "$$venv/bin/python" scripts/import_graph.py && \
		"$$venv/bin/python" scripts/long_functions.py

test-fast:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/python" -m pytest -q -m "not slow" $(PYTEST_ARGS)

# The exact set every machine installs: all packages, transitive ones included, for CPython 3.11 on
# x86-64 Linux (the project's machines), torch / torchvision capped by scripts/lock-caps.txt.
lock:
	uv pip compile pyproject.toml --extra test --constraint scripts/lock-caps.txt \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 --annotation-style line \
		-o requirements.lock

bench:
	@venv="$$(scripts/env.sh)" && "$$venv/bin/faceflow" bench render --json
