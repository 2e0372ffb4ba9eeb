# make install PREFIX=/usr/local — a release binary with the Swift runtime linked statically,
# the workers' init (a small static C program, PREFIX/libexec/tether/tether-init), the systemd
# units, and the example configurations (only where none exists yet).
PREFIX ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system
CONFDIR ?= /etc/tether
SCRATCH ?= .build-release

BIN := $(SCRATCH)/release/tether
INIT := $(SCRATCH)/release/tether-init
CC ?= cc
# The workers' init is built against musl where it is installed (Debian's musl-tools): each
# worker's init then writes 12–20 KiB of its own pages, against ~44 KiB with glibc's static start.
INITCC ?= $(shell command -v musl-gcc >/dev/null 2>&1 && echo musl-gcc || echo $(CC))

VERSION := $(shell sed -n 's/.*number = "\(.*\)".*/\1/p' Sources/TetherCore/Version.swift)
DEB := $(SCRATCH)/tether_$(VERSION)_amd64.deb
STAGE := $(SCRATCH)/deb

.PHONY: build init install uninstall man completions deb

# The init after the Swift build: SwiftPM makes $(SCRATCH)/release a link, which a directory
# made first for the init would stand in the way of.
build:
	swift build -c release --scratch-path $(SCRATCH) --product tether --static-swift-stdlib
	$(MAKE) --no-print-directory init

# The workers' init and keeper alone (the benchmarks and SmallInitTests build it with INIT=PATH).
init:
	mkdir -p $(dir $(INIT))
	$(INITCC) -static -O2 -Wall -ICSeccomp/include -o $(INIT) init/tether-init.c CSeccomp/init.c CSeccomp/keeper.c

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tether
	install -D -m 0755 $(INIT) $(DESTDIR)$(PREFIX)/libexec/tether/tether-init
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	for u in systemd/*.service; do \
	  sed 's|/usr/local/bin/tether|$(PREFIX)/bin/tether|g' $$u > $(DESTDIR)$(UNITDIR)/$$(basename $$u) && \
	  chmod 0644 $(DESTDIR)$(UNITDIR)/$$(basename $$u) || exit 1; \
	done
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	for c in systemd/*.toml; do \
	  [ -e $(DESTDIR)$(CONFDIR)/$$(basename $$c) ] || install -m 0644 $$c $(DESTDIR)$(CONFDIR)/$$(basename $$c); \
	done

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/tether $(DESTDIR)$(PREFIX)/libexec/tether/tether-init
	for u in systemd/*.service; do rm -f $(DESTDIR)$(UNITDIR)/$$(basename $$u); done

# Man pages from the command tree (swift-argument-parser's generate-manual), one per command,
# named as `man tether-run` finds them; tether.toml(5) is written by hand.
man: build
	swift build -c release --scratch-path $(SCRATCH) --product generate-manual
	rm -rf $(SCRATCH)/man && mkdir -p $(SCRATCH)/man
	$(SCRATCH)/release/generate-manual $(BIN) --multi-page --date 2026-11-26 --output-directory $(SCRATCH)/man
	python3 packaging/man-names.py $(SCRATCH)/man
	cp packaging/man/tether.toml.5 $(SCRATCH)/man/

completions: build
	rm -rf $(SCRATCH)/completions && mkdir -p $(SCRATCH)/completions
	$(BIN) --generate-completion-script bash | sed '1{/^#!/d}' > $(SCRATCH)/completions/tether
	$(BIN) --generate-completion-script zsh > $(SCRATCH)/completions/_tether
	$(BIN) --generate-completion-script fish > $(SCRATCH)/completions/tether.fish

# tether_VERSION_amd64.deb with dpkg-deb: no network, no debhelper. The units run
# /usr/bin/tether; the example configurations are conffiles in /etc/tether and examples in
# /usr/share/doc/tether/examples. Maintainer scripts: packaging/deb.
deb: build man completions
	rm -rf $(STAGE) && mkdir -p $(STAGE)/DEBIAN
	install -D -m 0755 $(BIN) $(STAGE)/usr/bin/tether
	install -D -m 0755 $(INIT) $(STAGE)/usr/libexec/tether/tether-init
	strip --strip-unneeded --remove-section=.comment --remove-section=.note $(STAGE)/usr/bin/tether $(STAGE)/usr/libexec/tether/tether-init
	install -d -m 0755 $(STAGE)/lib/systemd/system
	for u in systemd/*.service; do \
	  sed 's|/usr/local/bin/tether|/usr/bin/tether|g' $$u > $(STAGE)/lib/systemd/system/$$(basename $$u) && \
	  chmod 0644 $(STAGE)/lib/systemd/system/$$(basename $$u) || exit 1; \
	done
	install -d -m 0755 $(STAGE)/etc/tether $(STAGE)/usr/share/doc/tether/examples
	for c in systemd/*.toml; do \
	  install -m 0644 $$c $(STAGE)/etc/tether/ && install -m 0644 $$c $(STAGE)/usr/share/doc/tether/examples/ || exit 1; \
	done
	install -m 0644 packaging/deb/copyright $(STAGE)/usr/share/doc/tether/copyright
	printf 'tether ($(VERSION)) unstable; urgency=medium\n\n  * Release $(VERSION).\n\n -- Tether developers <tether@example.org>  Thu, 26 Nov 2026 00:00:00 +0000\n' \
	  | gzip -9n > $(STAGE)/usr/share/doc/tether/changelog.gz
	install -d -m 0755 $(STAGE)/usr/share/man/man1 $(STAGE)/usr/share/man/man5
	for m in $(SCRATCH)/man/*.1; do gzip -9n < $$m > $(STAGE)/usr/share/man/man1/$$(basename $$m).gz; done
	gzip -9n < $(SCRATCH)/man/tether.toml.5 > $(STAGE)/usr/share/man/man5/tether.toml.5.gz
	install -D -m 0644 $(SCRATCH)/completions/tether $(STAGE)/usr/share/bash-completion/completions/tether
	install -D -m 0644 $(SCRATCH)/completions/_tether $(STAGE)/usr/share/zsh/vendor-completions/_tether
	install -D -m 0644 $(SCRATCH)/completions/tether.fish $(STAGE)/usr/share/fish/vendor_completions.d/tether.fish
	sed 's/@VERSION@/$(VERSION)/' packaging/deb/control > $(STAGE)/DEBIAN/control
	echo "Installed-Size: $$(du -sk --exclude=DEBIAN $(STAGE) | cut -f1)" >> $(STAGE)/DEBIAN/control
	for c in systemd/*.toml; do echo /etc/tether/$$(basename $$c); done > $(STAGE)/DEBIAN/conffiles
	install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm $(STAGE)/DEBIAN/
	dpkg-deb --root-owner-group -Zxz --build $(STAGE) $(DEB)
	@echo "built $(DEB)"
