# The two commands a user needs: `make demo` and `make test`. Each installs
# what it lacks (Debian packages, Apache Kafka from Maven Central) first.
BUILD ?= build
ASAN_BUILD ?= build-asan
CMAKE_FLAGS ?=
JOBS ?= 2

.PHONY: all deps build asan-build test test-unit test-integration test-asan test-real-kafka demo bench chaos clean dev-up dev-down

all: build

deps:
	@tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) -G Ninja $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan-build: deps
	@cmake -S . -B $(ASAN_BUILD) -G Ninja -DCRM_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# Every test: unit and integration on the normal build, the same suites under
# ASan+UBSan, and the end-to-end suite against a real Apache Kafka 3.9 broker.
test: build
	@tools/run-tests.sh all

test-unit: build
	@ctest --test-dir $(BUILD) -L unit --output-on-failure

test-integration: build
	@ctest --test-dir $(BUILD) -L integration --output-on-failure

test-asan: asan-build
	@tools/run-tests.sh asan

test-real-kafka: build
	@tools/run-tests.sh real-kafka

demo: build
	@tools/demo/demo.sh

bench: build
	@tools/bench/bench.sh

# The long chaos suite: kills, broker faults, provider storms, a PostgreSQL
# restart, with more requests than the short version in `make test`; prints
# its figures (docs/chaos.md).
chaos: build
	@BUILD=$(BUILD) tools/chaos/run.sh

dev-up: build
	@$(BUILD)/tools/crmctl/crmctl dev up

dev-down:
	@$(BUILD)/tools/crmctl/crmctl dev down

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
