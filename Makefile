# Agent Factory: the two set-up commands are `make demo` and `make test`.
# Every target first installs missing Debian packages (scripts/install-deps; quiet when all
# are there), then configures and builds with CMake + Ninja in build/.

BUILD_DIR ?= build
JOBS ?= 2
CMAKE_FLAGS ?= -DFACTORY_WERROR=ON
# ccache (CMakeLists.txt uses it when installed): paths relative to the checkout, so a fresh
# clone elsewhere (CI) reuses the objects compiled in another one.
export CCACHE_BASEDIR ?= $(CURDIR)
export CCACHE_NOHASHDIR ?= true

# `make fuzz`: the libFuzzer targets of fuzz/, built with clang 16 (Debian's default clang 14
# cannot compile libstdc++'s <expected>) in their own tree, each run FUZZ_SECONDS from its
# seed corpus (fuzz/run.sh; FUZZ_TARGETS="sse cli_output" picks some, FUZZ_KEEP_CORPUS=1 keeps
# what they discover in fuzz/corpus/).
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=
FUZZ_CC ?= clang-16
FUZZ_CXX ?= clang++-16

.PHONY: all deps configure build test demo bench fuzz format clean

all: build

deps:
	@scripts/install-deps

configure: deps
	@mkdir -p $(BUILD_DIR)
	@cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS) >$(BUILD_DIR)/configure.log 2>&1 \
	  || { cat $(BUILD_DIR)/configure.log >&2; exit 1; }

build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

# No retries: a test that fails only sometimes is a bug to fix, not to hide.
test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j$(JOBS)

# The pipeline demo: examples/textkit built from its backlog by script agents in a temp dir
# (examples/demo.sh says what it does; exit 0 only when every task is done and checked).
demo: configure
	cmake --build $(BUILD_DIR) -j$(JOBS) --target factory
	FACTORY_BIN=$(abspath $(BUILD_DIR))/factory examples/demo.sh

bench: build
	@if [ -x bench/run.sh ]; then \
	  bench/run.sh $(BUILD_DIR); \
	else \
	  echo "make bench: bench/run.sh is not there yet" >&2; exit 1; \
	fi

fuzz:
	@scripts/install-deps --fuzz
	@mkdir -p $(FUZZ_BUILD_DIR)
	@CC=$(FUZZ_CC) CXX=$(FUZZ_CXX) cmake -S . -B $(FUZZ_BUILD_DIR) -G Ninja -DFACTORY_FUZZ=ON \
	  -DFACTORY_BUILD_TESTS=OFF -DFACTORY_BUILD_BENCH=OFF >$(FUZZ_BUILD_DIR)/configure.log 2>&1 \
	  || { cat $(FUZZ_BUILD_DIR)/configure.log >&2; exit 1; }
	cmake --build $(FUZZ_BUILD_DIR) -j$(JOBS) --target fuzz_targets
	FUZZ_SECONDS=$(FUZZ_SECONDS) fuzz/run.sh $(FUZZ_BUILD_DIR) $(FUZZ_TARGETS)

# `make format`: clang-format every tracked C++ file in place (.ci/run checks it).
format:
	@scripts/check-format --fix

clean:
	rm -rf $(BUILD_DIR) build-asan $(FUZZ_BUILD_DIR)
