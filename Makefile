# The two commands an operator needs: `make run` and `make test`. Each first installs
# what it needs from the distribution (setup/packages.sh: Debian/Ubuntu as root), or
# stops with the one command to run.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test system-packages test-packages demo bench clean

system-packages:
	@sh setup/packages.sh run

test-packages:
	@sh setup/packages.sh test
	@sh setup/synapse.sh

$(BIN)/ixpect: pyproject.toml ixpect/_frames.c | system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## Replay the bundled demo capture with the bundled config and print the events.
run: system-packages $(BIN)/ixpect
	$(BIN)/ixpect run -c examples/demo.conf.yaml --pcap examples/demo.pcap

## Run the whole test suite (what CI runs, with CI=true).
test: test-packages $(BIN)/ixpect
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Rebuild the demo capture from its scapy script.
demo: $(BIN)/ixpect
	$(BIN)/python examples/make_demo_pcap.py examples/demo.pcap

## Throughput benchmarks (docs/performance.md says what they measure).
bench: $(BIN)/ixpect
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) build *.egg-info bench/out ixpect/*.so
