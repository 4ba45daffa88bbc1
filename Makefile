# Thin wrapper over CMake/CTest. `sh .ci/setup demo|test` installs packages first.
BUILD ?= build
JOBS  ?= 2
NP    ?= 2
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
MPIRUN_ENV = OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

.PHONY: all build check test demo demo-readme asan bench clean rooms-graph docs-numbers deep-model

all: build

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

check test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

# The bundled demo: a small synthetic Llama and random calibration tokens, then the
# pipeline on NP ranks with configs/demo.yaml (run directory: demo-run/run).
demo: build
	rm -rf demo-run
	$(BUILD)/qshard synth-model --arch llama --layers 6 --hidden 256 --intermediate 704 \
	    --heads 4 --kv-heads 2 --vocab 512 --dtype bf16 --shards 2 --tokens 65536 demo-run/model
	$(MPIRUN_ENV) mpirun --oversubscribe -np $(NP) $(BUILD)/qshard run configs/demo.yaml

# README.md's demo table rewritten with what the current build prints (the same run as
# `make demo`, in a temp directory; CTest's test_demo fails until README matches).
demo-readme: build
	$(MPIRUN_ENV) QS_BIN=$(BUILD)/qshard QS_SOURCE_DIR=$(CURDIR) \
	    /usr/bin/python3 tests/mpi/test_demo.py --update-readme

asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DQS_SANITIZE=ON
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ctest --output-on-failure -j$(JOBS) -L '^(unit|san)$$' -LE nosan

clean:
	rm -rf $(BUILD) build-asan demo-run

# Reruns the committed command behind every table of numbers in README.md and docs/ (not in CI:
# hours in full), each writing $(BUILD)/docs-numbers/NAME.txt; docs/ is never edited.
# QUICK=1: every command at its smallest setting; ONLY="demo write": those entries;
# `sh tests/docs_numbers.sh --list build` lists the entries and their commands.
QUICK ?=
ONLY  ?=
docs-numbers: build
	sh tests/docs_numbers.sh $(if $(QUICK),--quick) $(BUILD) $(ONLY)

# The rooms' CMake target graph shown in docs/design.md.
rooms-graph:
	sh tests/rooms/graph.sh docs/rooms.dot

# The 16-layer deep model for studies (docs/model.md, "A deeper trained model for studies"):
# a torch venv (tests/data/deep_setup.sh, PyPI) and the generator, ~40 min on one core; nothing
# is done when DEEP_MODEL_DIR already holds the model of this config and recipe. Needs the
# fixtures in $(QS_SHARED_DIR)/fixtures (default ../shared).
DEEP_MODEL_DIR ?= $(BUILD)/deep-model
TORCH_VENV     ?= /work/venv-torch
QS_SHARED_DIR  ?= $(CURDIR)/../shared
deep-model:
	sh tests/data/deep_setup.sh $(TORCH_VENV)
	QS_SHARED_DIR=$(QS_SHARED_DIR) $(TORCH_VENV)/bin/python tests/data/make_deep_model.py \
	    --reuse --venv $(TORCH_VENV) --out $(DEEP_MODEL_DIR)
