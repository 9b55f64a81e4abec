# Install i2q: `make install PREFIX=~/.local` (default /usr/local). Builds a relocatable release
# binary in .build-install/ — the Swift runtime and Foundation linked statically (no toolchain
# library on the loader path needed), Swift code for I2Q_TARGET_CPU (default x86-64: any x86-64 CPU;
# the C kernels pick scalar/AVX2/AVX-512 at run time) — records the
# git commit and build date for `i2q --version`, and installs bash/zsh/fish completions.
# Run-time needs: the Debian libraries libopenblas0, libzstd1, libxxhash0, libpng16-16, libjpeg62-turbo
# (scripts/setup.sh installs their -dev packages, which pull them in).
PREFIX ?= /usr/local
I2Q_TARGET_CPU ?= x86-64
BUILD := .build-install
COMMIT := $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
DATE := $(shell date -u +%Y-%m-%d)
SWIFT_FLAGS := -c release --static-swift-stdlib --scratch-path $(BUILD) --product i2q \
	-Xcc -DI2Q_GIT_COMMIT='"$(COMMIT)"' -Xcc -DI2Q_BUILD_DATE='"$(DATE)"'

.PHONY: build install uninstall
build:
	I2Q_TARGET_CPU=$(I2Q_TARGET_CPU) swift build $(SWIFT_FLAGS)

install: build
	install -d "$(PREFIX)/bin" "$(PREFIX)/share/bash-completion/completions" \
		"$(PREFIX)/share/zsh/site-functions" "$(PREFIX)/share/fish/vendor_completions.d"
	install -m 755 $(BUILD)/release/i2q "$(PREFIX)/bin/i2q"
	"$(PREFIX)/bin/i2q" --generate-completion-script bash > "$(PREFIX)/share/bash-completion/completions/i2q"
	"$(PREFIX)/bin/i2q" --generate-completion-script zsh > "$(PREFIX)/share/zsh/site-functions/_i2q"
	"$(PREFIX)/bin/i2q" --generate-completion-script fish > "$(PREFIX)/share/fish/vendor_completions.d/i2q.fish"
	@echo "installed $(PREFIX)/bin/i2q: $$("$(PREFIX)/bin/i2q" --version | head -1)"

uninstall:
	rm -f "$(PREFIX)/bin/i2q" "$(PREFIX)/share/bash-completion/completions/i2q" \
		"$(PREFIX)/share/zsh/site-functions/_i2q" "$(PREFIX)/share/fish/vendor_completions.d/i2q.fish"
