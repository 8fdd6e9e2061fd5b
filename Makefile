# Quick start:   make run    (sets up, runs `dsf demo`: five organisations on loopback, every MII process end to end)
#                make test   (sets up and runs the test suite: SQLite always, PostgreSQL when installed)
#                make network (a development network in .local/network that keeps running)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup run network mailbox test bench clean

$(BIN)/.installed: pyproject.toml plugins/ping_pong/pyproject.toml plugins/hello_world/pyproject.toml plugins/feasibility/pyproject.toml plugins/data_transfer/pyproject.toml plugins/report/pyproject.toml examples/site-inventory/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,postgres]'
	$(BIN)/pip install -q -e plugins/ping_pong -e plugins/hello_world -e plugins/feasibility -e plugins/data_transfer -e plugins/report -e examples/site-inventory
	touch $@

setup: $(BIN)/.installed

certs/ca.crt: | setup
	$(BIN)/dsf pki init certs

certs/local.test/client.crt: certs/ca.crt
	$(BIN)/dsf pki issue certs local.test --organization

run: setup
	$(BIN)/dsf demo

network: setup
	test -f .local/network/network.toml || $(BIN)/dsf network init .local/network
	$(BIN)/dsf network up .local/network

mailbox: setup certs/local.test/client.crt
	$(BIN)/dsf fhir start --config examples/local-node/node.toml

test: setup
	$(BIN)/mypy dsf_core plugins/ping_pong/src plugins/hello_world/src plugins/feasibility/src plugins/data_transfer/src plugins/report/src examples/site-inventory/src
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/mailbox.py
	$(BIN)/python benchmarks/engine.py
	$(BIN)/python benchmarks/feasibility.py

clean:
	rm -rf $(VENV) data .local
