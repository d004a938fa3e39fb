# The two commands of README.md: `make run` and `make test`. Both install missing Debian packages first.
SWIFT_FLAGS := -Xswiftc -warnings-as-errors
# Arguments for `make run`, e.g. make run ARGS="--listen 127.0.0.1:2526 --outbox /tmp/outbox"
ARGS ?=
# Swift Testing starts every test at once unless told otherwise. The suites spawn servers, emulators and libcurl
# transports (each a socketpair and its connections), so an unbounded run held 400 to 700 descriptors on a fast
# machine, and a slow one overlaps more tests: at a soft limit of 1024 (a fresh machine's default) accept(2)
# and socketpair(2) fail at random, listeners pause and Foundation's Process wedges. Sixteen tests at a time
# peak near 190 descriptors and cost about 2 s of the 16 s run.
SWIFT_TEST := SWT_EXPERIMENTAL_MAXIMUM_PARALLELIZATION_WIDTH=16 swift test --skip-build

.PHONY: run test build unit-test e2e-test bench fuzz lint format clean install uninstall deb
.PHONY: install-sendmail install-sendmail-links uninstall-sendmail deb-gateway deb-sendmail

run:
	.ci/install-packages build
	swift build -c release --product acs-smtp-gateway
	.build/release/acs-smtp-gateway serve $(ARGS)

build:
	.ci/install-packages build
	swift build --build-tests $(SWIFT_FLAGS)

test: build
	.ci/install-packages test
	$(SWIFT_TEST)
	python3 -m pytest Tests/EndToEnd -q -p no:cacheprovider

unit-test: build
	$(SWIFT_TEST)

e2e-test: build
	.ci/install-packages test
	python3 -m pytest Tests/EndToEnd -q -p no:cacheprovider

# Throughput and latency figures side by side with Postfix's smtp-sink, and peak memory against message
# size (not part of `make test`).
bench:
	.ci/install-packages bench
	swift build -c release
	python3 Tests/Benchmarks/cpu_per_message.py
	python3 Tests/Benchmarks/smtp_throughput.py
	python3 Tests/Benchmarks/tls_throughput.py
	python3 Tests/Benchmarks/convert_throughput.py
	python3 Tests/Benchmarks/acs_delivery_throughput.py
	python3 Tests/Benchmarks/memory_peaks.py

# libFuzzer with AddressSanitizer on every parser (Fuzz/, a package of its own; not part of `make test`):
# each target runs FUZZ_SECONDS, or FUZZ_RUNS executions when fewer; FUZZ_TARGETS picks some. Findings land in
# Fuzz/.build/fuzz/artifacts.
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= -1
fuzz:
	.ci/install-packages build
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) Fuzz/run.sh

# swift-format, which ships with the toolchain, with the rules of .swift-format (4 spaces, 120 columns).
# Fuzz/Sources holds symlinks to Sources/: only its own files are named, so no file is read twice.
# `make lint` fails on any deviation; `make format` rewrites the files in place.
FORMAT_PATHS = Package.swift Sources Tests Fuzz/Package.swift $(shell find Fuzz/Sources -name '*.swift' -type f)

lint:
	swift format lint --strict --parallel --recursive $(FORMAT_PATHS)

format:
	swift format format --in-place --parallel --recursive $(FORMAT_PATHS)

clean:
	rm -rf .build Fuzz/.build

# --------------------------------------------------------------------------------------------------
# Installation (README.md "Installing"). `make install [DESTDIR=…] [PREFIX=/usr]`, `make uninstall`, `make deb`.
#
# PREFIX (default /usr) places the binaries in $(PREFIX)/bin and the units in $(PREFIX)/lib/systemd/system:
# systemd reads both /usr/lib/systemd/system and /usr/local/lib/systemd/system (systemd.unit(5), "Unit File
# Load Path"), so a PREFIX=/usr/local install needs no file in /etc/systemd/system, which stays the
# administrator's (drop-ins, `systemctl edit`). ExecStart= is rewritten to $(PREFIX)/bin.
# Configuration is always under /etc whatever PREFIX is, because the unit names
# /etc/acs-smtp-gateway/gateway.conf and /etc/acs-smtp-gateway/connection-string.
# Modes there: the service runs as an unprivileged DynamicUser and reads gateway.conf itself, so the
# directory is 0755 and gateway.conf 0644 (it holds no secret: the daemon refuses secret keys in it). The
# credential files next to it (connection-string, access-key, azure-client-secret) are the administrator's,
# 0600 root, and only systemd (PID 1, root) reads them, for LoadCredential=. Older installs made the
# directory 0750, which hid a credential file created with a looser mode; install tightens such a file
# (chmod go=) before it opens the directory.
# INSTALL_BINARY=<path to acs-smtp-gateway> skips the release build and installs that binary instead (the tests
# pass the debug build); the emulator is taken from the same directory unless INSTALL_EMULATOR says otherwise.
PREFIX ?= /usr
DESTDIR ?=
BINDIR := $(PREFIX)/bin
UNITDIR := $(PREFIX)/lib/systemd/system
# Its own build directory with the Swift runtime linked in, so the installed binary (and the .deb) runs
# without the toolchain; `make run` keeps using .build/release as before.
INSTALL_BUILD := .build/install
INSTALL_BINARY ?=
GATEWAY_INSTALL_BIN := $(or $(INSTALL_BINARY),$(INSTALL_BUILD)/release/acs-smtp-gateway)
INSTALL_EMULATOR ?= $(dir $(GATEWAY_INSTALL_BIN))acs-email-emulator
GATEWAY_CONF := /etc/acs-smtp-gateway/gateway.conf
# The secrets the unit and gateway.conf name in /etc/acs-smtp-gateway (never installed, only kept 0600).
CREDENTIAL_FILES := connection-string access-key azure-client-secret

install:
ifeq ($(INSTALL_BINARY),)
	.ci/install-packages build
	swift build -c release --static-swift-stdlib --scratch-path $(INSTALL_BUILD)
endif
	test -x "$(GATEWAY_INSTALL_BIN)" && test -x "$(INSTALL_EMULATOR)"
	install -D -m 0755 "$(GATEWAY_INSTALL_BIN)" "$(DESTDIR)$(BINDIR)/acs-smtp-gateway"
	install -D -m 0755 "$(INSTALL_EMULATOR)" "$(DESTDIR)$(BINDIR)/acs-email-emulator"
	sed 's|^ExecStart=/usr/bin/acs-smtp-gateway |ExecStart=$(BINDIR)/acs-smtp-gateway |' systemd/acs-smtp-gateway.service \
		| install -D -m 0644 /dev/stdin "$(DESTDIR)$(UNITDIR)/acs-smtp-gateway.service"
	grep -q '^ExecStart=$(BINDIR)/acs-smtp-gateway ' "$(DESTDIR)$(UNITDIR)/acs-smtp-gateway.service"
	install -D -m 0644 systemd/acs-smtp-gateway.socket "$(DESTDIR)$(UNITDIR)/acs-smtp-gateway.socket"
	install -D -m 0644 systemd/acs-smtp-gateway-sendmail.socket "$(DESTDIR)$(UNITDIR)/acs-smtp-gateway-sendmail.socket"
	@# Credential files first, then the directory, so no secret is ever readable through it.
	@for secret in $(CREDENTIAL_FILES); do \
		file="$(DESTDIR)/etc/acs-smtp-gateway/$$secret"; \
		if [ -f "$$file" ] && [ -n "$$(find "$$file" -perm /077)" ]; then \
			chmod go= "$$file" && echo "made $$file readable by its owner only (it holds a secret)"; \
		fi; \
	done
	install -d -m 0755 "$(DESTDIR)/etc/acs-smtp-gateway"
	@# The configuration file is the administrator's once it exists: never overwritten.
	if [ -e "$(DESTDIR)$(GATEWAY_CONF)" ]; then \
		echo "keeping existing $(DESTDIR)$(GATEWAY_CONF)"; \
	else \
		install -m 0644 etc/acs-smtp-gateway/gateway.conf "$(DESTDIR)$(GATEWAY_CONF)"; \
	fi
	@if [ -e "$(DESTDIR)/etc/default/acs-smtp-gateway" ]; then \
		echo "note: $(DESTDIR)/etc/default/acs-smtp-gateway is no longer read: move its GATEWAY_OPTS into $(GATEWAY_CONF), then delete it"; \
	fi

# Removes what install added; an edited gateway.conf and the credential files in /etc/acs-smtp-gateway stay.
# The sendmail links of install-sendmail go first, as they would lead nowhere without the binary.
uninstall: uninstall-sendmail
	rm -f "$(DESTDIR)$(BINDIR)/acs-smtp-gateway" "$(DESTDIR)$(BINDIR)/acs-email-emulator" \
		"$(DESTDIR)$(UNITDIR)/acs-smtp-gateway.service" "$(DESTDIR)$(UNITDIR)/acs-smtp-gateway.socket" \
		"$(DESTDIR)$(UNITDIR)/acs-smtp-gateway-sendmail.socket"
	if cmp -s etc/acs-smtp-gateway/gateway.conf "$(DESTDIR)$(GATEWAY_CONF)"; then \
		rm -f "$(DESTDIR)$(GATEWAY_CONF)"; \
	elif [ -e "$(DESTDIR)$(GATEWAY_CONF)" ]; then \
		echo "keeping edited $(DESTDIR)$(GATEWAY_CONF)"; \
	fi
	if [ -d "$(DESTDIR)/etc/acs-smtp-gateway" ]; then \
		rmdir "$(DESTDIR)/etc/acs-smtp-gateway" 2>/dev/null || echo "keeping non-empty $(DESTDIR)/etc/acs-smtp-gateway"; \
	fi

# --------------------------------------------------------------------------------------------------
# The sendmail command as the host's MTA (README.md "The sendmail command as the host's MTA: packages and
# links"): `make install-sendmail [DESTDIR=…] [PREFIX=/usr] [FORCE=1]` after `make install`, and
# `make uninstall-sendmail`. `make deb` ships the same links as the package acs-smtp-gateway-sendmail.
#
# The binary behaves as sendmail, mailq (the queue list) or newaliases (a note: aliases live in gateway.conf)
# by the name it is run under, so each is a symbolic link to $(BINDIR)/acs-smtp-gateway. Programs run
# /usr/sbin/sendmail by that path (PHP's sendmail_path, cron, mailx) and older ones /usr/lib/sendmail, so
# those two are made there whatever PREFIX is; mailq and newaliases are found through PATH and go in
# $(BINDIR), /usr/bin as with Debian's MTAs (Postfix, nullmailer, msmtp-mta). /usr/lib/sendmail points at
# ../sbin/sendmail as theirs does. The links are relative, so they lead to the right file wherever the tree
# lies: under / as under a DESTDIR or a package's staging directory.
# Only one MTA can own these names. Install refuses, naming them, when any of them exists and is not
# already a link to $(BINDIR)/acs-smtp-gateway: another MTA is installed, and replacing its sendmail would
# break it (remove or purge it first). FORCE=1 replaces them anyway. Uninstall removes only the links that
# lead to $(BINDIR)/acs-smtp-gateway, /usr/lib/sendmail before the /usr/sbin/sendmail it goes through.
SENDMAIL_LINKS := /usr/lib/sendmail /usr/sbin/sendmail $(BINDIR)/mailq $(BINDIR)/newaliases
FORCE ?=

install-sendmail:
	@test -x "$(DESTDIR)$(BINDIR)/acs-smtp-gateway" || { \
		echo "error: $(DESTDIR)$(BINDIR)/acs-smtp-gateway is not installed: run make install first (same DESTDIR and PREFIX)" >&2; \
		exit 1; }
	@$(MAKE) --no-print-directory install-sendmail-links
	@echo "next: systemctl enable --now acs-smtp-gateway-sendmail.socket && systemctl restart acs-smtp-gateway.service"

# The links alone, without looking for the binary: `make deb` stages them for a package of their own.
install-sendmail-links:
	@set -e; \
	ours=$$(readlink -m "$(DESTDIR)$(BINDIR)/acs-smtp-gateway"); \
	taken=; \
	for link in $(SENDMAIL_LINKS); do \
		path="$(DESTDIR)$$link"; \
		if [ -e "$$path" ] || [ -L "$$path" ]; then \
			{ [ -L "$$path" ] && [ "$$(readlink -m "$$path")" = "$$ours" ]; } || taken="$$taken $$path"; \
		fi; \
	done; \
	if [ -n "$$taken" ]; then \
		if [ "$(FORCE)" != 1 ]; then \
			echo "error: another mail transport agent provides$$taken" >&2; \
			echo "error: remove or purge it first (\`dpkg -S /usr/sbin/sendmail\` names its package: postfix," \
				"an exim4 package, nullmailer, msmtp-mta...), or replace these files with FORCE=1" >&2; \
			exit 1; \
		fi; \
		echo "FORCE=1: replacing$$taken (a package that owns them still lists them, and puts its own back when it is reinstalled or upgraded)"; \
	fi; \
	for link in $(SENDMAIL_LINKS); do \
		case "$$link" in \
			/usr/lib/sendmail) destination=/usr/sbin/sendmail ;; \
			*) destination="$(BINDIR)/acs-smtp-gateway" ;; \
		esac; \
		target=$$(realpath -m -s --relative-to="$$(dirname "$$link")" "$$destination"); \
		install -d -m 0755 "$(DESTDIR)$$(dirname "$$link")"; \
		ln -sfn "$$target" "$(DESTDIR)$$link"; \
		echo "$(DESTDIR)$$link -> $$target"; \
	done

uninstall-sendmail:
	@ours=$$(readlink -m "$(DESTDIR)$(BINDIR)/acs-smtp-gateway"); \
	for link in $(SENDMAIL_LINKS); do \
		path="$(DESTDIR)$$link"; \
		if [ -L "$$path" ] && [ "$$(readlink -m "$$path")" = "$$ours" ]; then \
			rm -f "$$path" && echo "removed $$path"; \
		elif [ -e "$$path" ] || [ -L "$$path" ]; then \
			echo "keeping $$path: it does not lead to $(BINDIR)/acs-smtp-gateway"; \
		fi; \
	done

# Binary .debs built straight with dpkg-deb from a staged `make install` (no debian/ source tree: the
# maintainer scripts and control templates live in etc/debian/, see etc/debian/control.in). `make deb` builds
# two packages into DEB_DIR and prints their paths, one a line:
# - acs-smtp-gateway (deb-gateway): the daemon, the emulator, the units, gateway.conf.
# - acs-smtp-gateway-sendmail (deb-sendmail): only the links of install-sendmail and a README. It makes the
#   gateway the host's MTA, so like every Debian MTA package it Provides, Conflicts with and Replaces
#   mail-transport-agent: only one package can own /usr/sbin/sendmail, and dpkg then refuses this one
#   beside Postfix, Exim, nullmailer or msmtp-mta instead of overwriting their sendmail, or apt offers to
#   remove them. (Not update-alternatives, which Debian does not use for MTAs: sendmail, mailq and
#   newaliases must belong to the MTA that actually runs, or mail goes to one that is not configured.)
#   Those Conflicts are why the links are not in acs-smtp-gateway itself: the gateway must stay installable
#   next to a Postfix that relays to it. Architecture all (there is no machine code in it); it depends on
#   exactly the acs-smtp-gateway it was built with, whose binary the links lead to.
VERSION ?= 0.1.0
GIT_HASH := $(shell git rev-parse --short HEAD 2>/dev/null)
DEB_VERSION := $(VERSION)$(if $(GIT_HASH),~git$(GIT_HASH))
DEB_ARCH = $(shell dpkg --print-architecture)
# Staging and output directory (git-ignored; the tests point it at a temporary directory).
DEB_DIR ?= .build/deb
DEB_DIR_ABS := $(abspath $(DEB_DIR))
DEB_ROOT := $(DEB_DIR_ABS)/root
DEB_FILE = $(DEB_DIR_ABS)/acs-smtp-gateway_$(DEB_VERSION)_$(DEB_ARCH).deb
SENDMAIL_DEB_ROOT := $(DEB_DIR_ABS)/sendmail-root
SENDMAIL_DEB_FILE = $(DEB_DIR_ABS)/acs-smtp-gateway-sendmail_$(DEB_VERSION)_all.deb
# xz like Debian's archive; the tests pass DEB_COMPRESSION=none for speed.
DEB_COMPRESSION ?= xz
# The libraries the binaries link; etc/debian/control.in adds procps (/bin/kill, the unit's ExecReload=).
DEB_FALLBACK_DEPENDS := libcurl4, libssl3, libc6

deb: deb-gateway deb-sendmail

deb-gateway:
	@# Only what this target makes, so DEB_DIR may name a directory that holds other files.
	rm -rf "$(DEB_ROOT)" "$(DEB_DIR_ABS)/shlibs" "$(DEB_DIR_ABS)/shlibdeps.log" "$(DEB_FILE)"
	$(MAKE) --no-print-directory install DESTDIR="$(DEB_ROOT)" PREFIX=/usr
	install -d -m 0755 "$(DEB_ROOT)/DEBIAN"
	install -m 0755 etc/debian/postinst etc/debian/prerm etc/debian/postrm "$(DEB_ROOT)/DEBIAN/"
	echo $(GATEWAY_CONF) | install -m 0644 /dev/stdin "$(DEB_ROOT)/DEBIAN/conffiles"
	@if objdump -p "$(DEB_ROOT)/usr/bin/acs-smtp-gateway" 2>/dev/null | grep -q 'NEEDED.*libswiftCore'; then \
		echo "warning: the binary links the Swift runtime dynamically (INSTALL_BINARY?): the package runs only where the toolchain is" >&2; \
	fi
	@# dpkg-shlibdeps (dpkg-dev) wants a debian/control in its working directory; the Swift runtime
	@# libraries of a toolchain build belong to no package, hence --ignore-missing-info.
	set -e; \
	depends="$(DEB_FALLBACK_DEPENDS)"; \
	if command -v dpkg-shlibdeps >/dev/null; then \
		mkdir -p "$(DEB_DIR_ABS)/shlibs/debian"; \
		printf 'Source: acs-smtp-gateway\n\nPackage: acs-smtp-gateway\nArchitecture: any\n' > "$(DEB_DIR_ABS)/shlibs/debian/control"; \
		depends=$$(cd "$(DEB_DIR_ABS)/shlibs" && dpkg-shlibdeps -O --ignore-missing-info \
			-e"$(DEB_ROOT)/usr/bin/acs-smtp-gateway" -e"$(DEB_ROOT)/usr/bin/acs-email-emulator" \
			2>"$(DEB_DIR_ABS)/shlibdeps.log" | sed -n 's/^shlibs:Depends=//p'); \
	fi; \
	[ -n "$$depends" ] || depends="$(DEB_FALLBACK_DEPENDS)"; \
	size=$$(du -sk --apparent-size --exclude=DEBIAN "$(DEB_ROOT)" | cut -f1); \
	sed -e "s|@VERSION@|$(DEB_VERSION)|" -e "s|@ARCH@|$(DEB_ARCH)|" -e "s|@DEPENDS@|$$depends|" -e "s|@SIZE@|$$size|" \
		etc/debian/control.in | install -m 0644 /dev/stdin "$(DEB_ROOT)/DEBIAN/control"
	dpkg-deb --build --root-owner-group -Z$(DEB_COMPRESSION) "$(DEB_ROOT)" "$(DEB_FILE)" >/dev/null
	@echo "$(DEB_FILE)"

# Needs no build: the links are made for /usr/bin/acs-smtp-gateway, which acs-smtp-gateway installs.
deb-sendmail:
	rm -rf "$(SENDMAIL_DEB_ROOT)" "$(SENDMAIL_DEB_FILE)"
	$(MAKE) --no-print-directory install-sendmail-links DESTDIR="$(SENDMAIL_DEB_ROOT)" PREFIX=/usr >/dev/null
	install -D -m 0644 etc/debian/acs-smtp-gateway-sendmail/README.Debian \
		"$(SENDMAIL_DEB_ROOT)/usr/share/doc/acs-smtp-gateway-sendmail/README.Debian"
	install -d -m 0755 "$(SENDMAIL_DEB_ROOT)/DEBIAN"
	set -e; \
	size=$$(du -sk --apparent-size --exclude=DEBIAN "$(SENDMAIL_DEB_ROOT)" | cut -f1); \
	sed -e "s|@VERSION@|$(DEB_VERSION)|g" -e "s|@SIZE@|$$size|" etc/debian/acs-smtp-gateway-sendmail/control.in \
		| install -m 0644 /dev/stdin "$(SENDMAIL_DEB_ROOT)/DEBIAN/control"
	dpkg-deb --build --root-owner-group -Z$(DEB_COMPRESSION) "$(SENDMAIL_DEB_ROOT)" "$(SENDMAIL_DEB_FILE)" >/dev/null
	@echo "$(SENDMAIL_DEB_FILE)"
