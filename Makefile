# The two commands of README.md: `make run` and `make test`. Both install missing Debian packages first.
SWIFT_FLAGS := -Xswiftc -warnings-as-errors
# Arguments for `make run`, e.g. make run ARGS="--listen 127.0.0.1:2526 --outbox /tmp/outbox"
ARGS ?=

.PHONY: run test build unit-test e2e-test bench clean

run:
	.ci/install-packages build
	swift build -c release --product acs-smtp-gateway
	.build/release/acs-smtp-gateway serve $(ARGS)

build:
	.ci/install-packages build
	swift build --build-tests $(SWIFT_FLAGS)

test: build
	.ci/install-packages test
	swift test --skip-build
	python3 -m pytest Tests/EndToEnd -q -p no:cacheprovider

unit-test: build
	swift test --skip-build

e2e-test: build
	.ci/install-packages test
	python3 -m pytest Tests/EndToEnd -q -p no:cacheprovider

# Throughput and latency figures side by side with Postfix's smtp-sink (not part of `make test`).
bench:
	.ci/install-packages bench
	swift build -c release
	python3 Tests/Benchmarks/smtp_throughput.py
	python3 Tests/Benchmarks/convert_throughput.py
	python3 Tests/Benchmarks/acs_delivery_throughput.py

clean:
	rm -rf .build
