# The two commands: `make run` and `make test`. Everything else is a convenience.
# Each target first runs scripts/setup (installs what is missing; quiet when all is there).
JOBS ?= $(shell nproc)
PRESET ?= release
BUILD := build/$(PRESET)

.PHONY: all setup configure build test test-asan test-tsan bench run model clean

all: build

setup:
	@scripts/setup

configure: setup
	@cmake --preset $(PRESET) >/dev/null

build: configure
	@cmake --build $(BUILD) -j $(JOBS)

model: setup
	@scripts/fetch-model

test: build model
	@ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan: setup
	@cmake --preset asan >/dev/null
	@cmake --build build/asan -j $(JOBS)
	@ctest --preset asan -j $(JOBS)

test-tsan: setup
	@cmake --preset tsan >/dev/null
	@cmake --build --preset tsan -j $(JOBS)
	@ctest --preset tsan -j $(JOBS)

bench: build
	@scripts/run-bench $(BUILD)

run: build model
	@scripts/run $(BUILD)

clean:
	rm -rf build
