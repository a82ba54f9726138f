# weft — the two Quick start commands are `make demo` and `make test`.
# Every target installs what it needs through scripts/setup.sh first (idempotent).

BUILD ?= build
PRESET ?= release
JOBS ?= $(shell nproc)

.PHONY: setup build demo demo-status demo-down hello test unit bench bench-quick format asan tsan clean

setup:
	@bash scripts/setup.sh

build: setup
	@cmake --preset $(PRESET) >/dev/null
	@cmake --build --preset $(PRESET) -j $(JOBS)

# Root for what needs it (network namespaces, iptables): sudo unless already root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# The reference scenario (App Mesh's cross-VPC walkthrough with TLS) on this machine:
# docs/walkthrough.md. Ends with the gateway's URL (http://127.0.0.1:8080/) and the page.
demo: build
	@$(SUDO) $(BUILD)/bin/weft demo up

demo-status:
	@$(SUDO) $(BUILD)/bin/weft demo status

demo-down:
	@$(SUDO) $(BUILD)/bin/weft demo down

# The smallest job: weft-proxy in front of a small backend, one request through it.
hello: build
	@bash examples/hello/run.sh

# Everything: unit tests, integration tests against the real binaries, fuzz-corpus replay.
test: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600

unit: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

bench: build
	@bench/proxy

bench-quick: build
	@bench/proxy --quick

asan: setup
	@cmake --preset debug-asan >/dev/null && cmake --build --preset debug-asan -j $(JOBS)
	@cd build-asan && ctest --output-on-failure -j $(JOBS)

tsan: setup
	@cmake --preset tsan >/dev/null && cmake --build --preset tsan -j $(JOBS)
	@cd build-tsan && ctest --output-on-failure -j $(JOBS)

format:
	@git ls-files '*.h' '*.cc' | xargs clang-format -i

clean:
	@rm -rf build build-asan build-tsan
