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

.PHONY: build install uninstall

build:
	swift build -c release --scratch-path $(SCRATCH) --product tether --static-swift-stdlib
	$(CC) -static -O2 -Wall -ICSeccomp/include -o $(INIT) init/tether-init.c CSeccomp/init.c

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
