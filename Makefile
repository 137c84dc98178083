# Fortress developer entry points. Run as root on a Debian/Ubuntu machine.
#   make demo   - bootstrap, build lab images, start a lab fleet, converge site.yml, prove it
#   make test   - everything CI runs (lint, unit, integration, Molecule), with stage timings
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT      := $(CURDIR)
VENV      := $(ROOT)/.venv
BIN       := $(VENV)/bin
export PATH := $(BIN):$(PATH)
export PYTHONPATH := $(ROOT)/tools
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
LAB       := $(BIN)/python -m fortress_lab
STAGE     := scripts/stage.sh
REPORTS   := $(ROOT)/.cache/reports
N         ?= 2
KIND      ?= container
SCENARIOS ?= default outer_dind vm
VM_LAB_TESTS := tests/integration/test_vm_lab.py

.PHONY: help bootstrap images lab-up lab-down converge check demo lint unit integration \
        molecule sanity build test test-clean test-sysbox vm-lab

help: ## List the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

bootstrap: ## Install what is missing on this machine and start dockerd (idempotent)
	@bash scripts/bootstrap.sh

images: bootstrap ## Build the lab host images of KIND (container, vm or all), cached by recipe hash
	@$(LAB) images --kind $(KIND)

lab-up: images ## Start N lab hosts (default 2) of KIND (container or vm) and write inventories/lab/hosts.yml
	@$(LAB) up --count $(N) --kind $(KIND)

lab-down: ## Remove the lab hosts (containers and volumes, or VMs, overlays and keys) and the inventory
	@$(LAB) down

converge: ## ansible-playbook site.yml on the lab fleet
	@$(BIN)/ansible-playbook -i inventories/lab site.yml

check: ## Check mode with diff on the lab fleet (shows drift, changes nothing)
	@$(BIN)/ansible-playbook -i inventories/lab site.yml --check --diff

demo: lab-up ## The main job: converge site.yml on a local lab fleet and prove the sandbox on each host
	@$(LAB) demo

lint: ## ansible-lint (production profile), yamllint, ruff, shellcheck, duplicate code (pylint, 6 lines)
	@shellcheck scripts/*.sh .ci/run roles/*/files/*.sh tools/fortress_lab/files/*.sh
	@$(BIN)/yamllint --strict .
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/ansible-lint --offline
	@$(BIN)/pylint --disable=all --enable=duplicate-code --min-similarity-lines=6 --score=no \
	  --ignore-imports=yes --ignore-signatures=yes \
	  plugins tools/fortress_lab $$(find roles/*/files tools/fortress_lab/files -name '*.py')

unit: ## Unit tests (pure logic)
	@$(BIN)/pytest -q tests/unit --junitxml=$(REPORTS)/unit.xml

integration: ## Integration tests and the adversarial suite (tests/security) against the local engine and lab hosts
	@$(BIN)/pytest -q tests/integration tests/security $(PYTEST_ARGS) --junitxml=$(REPORTS)/integration.xml

vm-lab: ## The VM lab host tests alone (tests/integration/test_vm_lab.py: one VM boot, SSH, interrupts)
	@$(BIN)/pytest -q $(VM_LAB_TESTS) --junitxml=$(REPORTS)/vm-lab.xml

molecule: ## Molecule scenarios (SCENARIOS="default outer_dind vm": container lab hosts, the outer layer, then a VM)
	@for s in $(SCENARIOS); do $(BIN)/molecule test -s $$s || exit 1; done

test-sysbox: ## Sysbox CE on a fresh VM lab host; needs FORTRESS_SYSBOX_DEB=/path/to/sysbox-ce.deb (not part of `make test`)
	@FORTRESS_SYSBOX_DEB="$(FORTRESS_SYSBOX_DEB)" $(BIN)/pytest tests/sysbox -v

build: ## Build the collection tarball and check it installs and serves fortress.agents.*
	@bash scripts/check-build.sh

sanity: ## ansible-test sanity on the built collection
	@bash scripts/check-build.sh --sanity

# Stage budgets (seconds): the measured time of each stage on the CI machine kind, with the
# VM lane beside it, and about 20 % to spare (bootstrap: packages to install; images: a build
# from an empty cache). A stage over its budget fails the run;
# so does a run over 60 minutes of wall time (scripts/stage.sh). The VM lab tests and the VM
# scenario run beside the other stages: QEMU's software emulation keeps one of the machine's
# two cores busy and leaves the other idle (measured with vmstat), and they share no lab host,
# network or container with them (the machine's leak checks leave out their labs' QEMU:
# FORTRESS_CONCURRENT_LABS); their output is printed when they end. The VM lane runs in a
# process group of its own (set -m), which an interrupted `make test` stops.
VM_LOG := $(REPORTS)/molecule-vm.log
test: ## Everything CI runs, with per-stage timings against budgets
	@rm -rf $(REPORTS) $${FORTRESS_TIMINGS:-.cache/timings.tsv}; mkdir -p $(REPORTS)
	@$(STAGE) bootstrap 300 bash scripts/bootstrap.sh \
	 && $(STAGE) images 360 $(LAB) images --kind all \
	 && { set -m; { { $(STAGE) vm-lab 180 $(MAKE) --no-print-directory vm-lab \
	          && $(STAGE) molecule-vm 3300 $(MAKE) --no-print-directory molecule SCENARIOS=vm; \
	        } > $(VM_LOG) 2>&1 < /dev/null & } ; vm=$$!; set +m; \
	      trap 'kill -TERM -- -'$$vm' 2>/dev/null; exit 130' INT TERM; \
	      echo "[test] the VM lab tests and the VM scenario run beside the next stages (log: $(VM_LOG))"; \
	      export FORTRESS_CONCURRENT_LABS=pytest-vm,molecule-vm; \
	      $(STAGE) lint 60 $(MAKE) --no-print-directory lint \
	      && $(STAGE) unit 180 $(MAKE) --no-print-directory unit \
	      && $(STAGE) build-sanity 150 $(MAKE) --no-print-directory sanity \
	      && $(STAGE) integration 1200 $(MAKE) --no-print-directory integration \
	           PYTEST_ARGS=--ignore=$(VM_LAB_TESTS) \
	      && $(STAGE) molecule-default 1140 $(MAKE) --no-print-directory molecule SCENARIOS=default \
	      && $(STAGE) molecule-outer_dind 840 $(MAKE) --no-print-directory molecule SCENARIOS=outer_dind; \
	      rc=$$?; echo "[test] waiting for the VM scenario"; \
	      wait $$vm || rc=1; cat $(VM_LOG); (exit $$rc); }; \
	 rc=$$?; $(STAGE) --summary || rc=1; $(BIN)/python -m fortress_lab report $(REPORTS) || rc=1; exit $$rc
