# make install PREFIX=/usr/local — a release binary with the Swift runtime linked statically,
# the systemd units, and the example configurations (only where none exists yet).
PREFIX ?= /usr/local
DESTDIR ?=
UNITDIR ?= /etc/systemd/system
CONFDIR ?= /etc/tether
SCRATCH ?= .build-release

BIN := $(SCRATCH)/release/tether

.PHONY: build install uninstall

build:
	swift build -c release --scratch-path $(SCRATCH) --product tether --static-swift-stdlib

install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tether
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
	rm -f $(DESTDIR)$(PREFIX)/bin/tether
	for u in systemd/*.service; do rm -f $(DESTDIR)$(UNITDIR)/$$(basename $$u); done
