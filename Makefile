# Thin wrapper around Meson: `make` builds build/osmosis, `make demo` shows it working,
# `make check` runs every test under AddressSanitizer and UndefinedBehaviorSanitizer.
BUILD      ?= build
CHECKBUILD ?= build-check

.PHONY: all deps build demo check bench format format-check clean

all: build

deps:
	@./scripts/install-deps.sh

build: deps
	@test -f $(BUILD)/build.ninja || meson setup $(BUILD) >/dev/null
	@ninja -C $(BUILD) >/dev/null

demo: build
	@./scripts/demo.sh $(BUILD)

check: deps
	@test -f $(CHECKBUILD)/build.ninja || meson setup $(CHECKBUILD) -Dsanitize=true >/dev/null
	@ninja -C $(CHECKBUILD) >/dev/null
	@./scripts/run-tests.sh $(CHECKBUILD)

bench: build
	@./$(BUILD)/bench/osmosis-bench-stall --osmosis ./$(BUILD)/osmosis
	@./$(BUILD)/bench/osmosis-bench-stall --osmosis ./$(BUILD)/osmosis --scale

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(CHECKBUILD)
