# Thin wrapper around Meson: `make` builds build/osmosis, `make demo` shows it working,
# `make check` runs every test under AddressSanitizer and UndefinedBehaviorSanitizer.
BUILD      ?= build
CHECKBUILD ?= build-check

.PHONY: all deps build demo check bench format format-check clean install

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

# Installs under PREFIX (default /usr/local; DESTDIR for staging): osmosis, its man pages, and
# the systemd unit template osmosis-watch@.service.
PREFIX ?= /usr/local
install: build
	@meson configure $(BUILD) -Dprefix=$(PREFIX) >/dev/null
	@meson install -C $(BUILD) --no-rebuild $(if $(DESTDIR),--destdir $(DESTDIR),)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(CHECKBUILD)
