# allocsite — top-level build. `make demo` and `make test` do all set-up.
CARGO ?= cargo
BIN    := target/release/allocsite
RT     := target/release/liballocsite_rt.so
DEMO   := testbins/out/demo.O2
DEMO_OUT := build/demo/demo.rewritten

.PHONY: all build testbins test demo bench fuzz clean deps

all: build testbins

deps:
	@./.ci/deps

build:
	$(CARGO) build --release --workspace

testbins:
	$(MAKE) -C testbins

test: deps build testbins
	ALLOCSITE_BIN=$(abspath $(BIN)) ALLOCSITE_RT=$(abspath $(RT)) \
	  $(CARGO) test --release --workspace --no-fail-fast -- --test-threads=2

demo: deps build testbins
	@mkdir -p build/demo
	@echo "== allocation functions found in $(DEMO)"
	$(BIN) analyze $(DEMO)
	@echo "== rewriting"
	$(BIN) rewrite $(DEMO) -o $(DEMO_OUT)
	@echo "== running the rewritten program (unchanged command line)"
	cd build/demo && ALLOCSITE_REPORT=demo-report.json ./demo.rewritten
	@echo "== per-site report"
	$(BIN) report build/demo/demo-report.json --top 10

bench: deps build testbins
	./testbins/bench/run

clean:
	$(CARGO) clean
	$(MAKE) -C testbins clean
	rm -rf build
