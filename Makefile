# pgfleet.core: one entry point for the lab fleet and every test layer.
# Run as root on a Debian 12 host. `make lab` then `make test`; `make help` lists the rest.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

VENV      := $(CURDIR)/.venv
LAB       := $(CURDIR)/.lab
PY        := $(VENV)/bin/python
BIN       := $(VENV)/bin

export CONTAINERS_CONF   := $(CURDIR)/lab/containers.conf
export PGFLEET_LAB_DIR   := $(LAB)
export ANSIBLE_CONFIG    := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
export PATH := $(BIN):$(PATH)

.PHONY: help prereqs venv image images k8s-image lab lab-destroy test lint sanity unit integration molecule bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-13s %s\n", $$1, $$2}'

prereqs: ## check root/podman and apt-install host packages
	@bash lab/prereqs.sh

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed ## the pinned Python toolchain in .venv

# The lab runs LAB_RELEASE (Debian 13 unless told: make lab LAB_RELEASE=bookworm); the
# Molecule scenarios run on both releases, so the tests build both images.
LAB_RELEASE ?= trixie
export PGFLEET_LAB_RELEASE := $(LAB_RELEASE)

image: prereqs ## build the lab's Debian systemd image for LAB_RELEASE (cached)
	@bash lab/build-image.sh $(LAB_RELEASE)

images: prereqs ## build both lab images, Debian 12 and 13 (cached)
	@bash lab/build-image.sh bookworm
	bash lab/build-image.sh trixie

k8s-image: prereqs ## build k8s_postgres's PostgreSQL image with podman (cached)
	@bash lab/k8s/build-image.sh

lab: prereqs venv image ## start the lab fleet and converge it with site.yml
	@start=$$(date +%s)
	ansible-playbook lab/fleet.yml
	ansible-playbook playbooks/site.yml
	bash lab/connect-info.sh
	echo "pgfleet: lab converged in $$(( $$(date +%s) - start )) s"

lab-destroy: ## remove the lab fleet's containers and network
	@if [ -x $(BIN)/ansible-playbook ]; then ansible-playbook lab/fleet.yml -e lab_state=absent; fi

LAYERS := lint sanity unit integration molecule
# Run one after another beside integration: one core at most (about 80 s), where
# integration leaves a quarter of the two idle (its playbooks wait on their servers).
# Their output follows integration's.
BESIDE_INTEGRATION := lint sanity unit

# Runs every layer even after one fails, then prints a tally and fails if any did.
test: prereqs venv images ## every test layer: lint, sanity, unit, integration, molecule
	@start=$$(date +%s); results=$(LAB)/layer-results; mkdir -p $(LAB)
	rm -f $$results $(LAB)/molecule-times $(LAB)/molecule-failures $(LAB)/unit.log $(LAB)/integration.log
	layer() {
	  echo "=== pgfleet: $$1"; t=$$(date +%s)
	  if $(MAKE) --no-print-directory $$1; then r=passed; else r=FAILED; fi
	  echo "$$1 $$r in $$(( $$(date +%s) - t )) s" | tee -a $$results | sed 's/^/=== pgfleet: /'
	}
	( for l in $(BESIDE_INTEGRATION); do layer $$l; done ) > $(LAB)/beside.log 2>&1 & beside=$$!
	joined() { [ -z "$$beside" ] || { wait $$beside || true; cat $(LAB)/beside.log; beside=; }; }
	for l in $(filter-out $(BESIDE_INTEGRATION),$(LAYERS)); do
	  [ $$l = integration ] || joined
	  layer $$l
	done
	joined
	echo "pgfleet: each layer's time"
	for l in $(LAYERS); do grep "^$$l " $$results || echo "$$l FAILED: no result"; done | sed 's/^/  /' | tee $(LAB)/layer-tally
	[ ! -f $(LAB)/molecule-times ] || { echo "pgfleet: each scenario's time (MOLECULE_LANES side by side, then MOLECULE_SOLO)"; sed 's/^=== pgfleet: molecule /  /' $(LAB)/molecule-times; }
	[ ! -s $(LAB)/molecule-failures ] || { echo "pgfleet: the Molecule tests that failed"; cat $(LAB)/molecule-failures; }
	# pytest's own summary lines of the failed tests, again at the end (CI shows a run's last lines).
	pytest_failed=$$(for l in unit integration; do [ ! -f $(LAB)/$$l.log ] || grep -a -E "^(FAILED|ERROR) tests/" $(LAB)/$$l.log | cut -c1-300 | sed "s/^/  $$l: /"; done; true)
	[ -z "$$pytest_failed" ] || printf 'pgfleet: the pytest tests that failed\n%s\n' "$$pytest_failed"
	failed=$$(awk '$$2 != "passed" {print $$1}' $(LAB)/layer-tally | xargs)
	echo "pgfleet: test layers took $$(( $$(date +%s) - start )) s$${failed:+; failed: $$failed}"
	echo "layers: $$(grep -c ' passed ' $(LAB)/layer-tally || true) passed, $$(grep -vc ' passed ' $(LAB)/layer-tally || true) failed"
	[ -z "$$failed" ]

lint: venv ## ansible-lint, production profile
	ansible-lint --profile production

sanity: venv ## ansible-test sanity on the built collection
	bash tests/sanity.sh

unit: venv ## pytest unit tests
	mkdir -p $(LAB); pytest -rfE tests/unit 2>&1 | tee $(LAB)/unit.log

integration: prereqs venv ## pytest against real PostgreSQL clusters on this host
	mkdir -p $(LAB); pytest -n 2 --dist loadfile -rfE tests/integration 2>&1 | tee $(LAB)/integration.log

SCENARIOS := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))

# Two lanes of scenarios side by side, each lane in order, then the solo scenarios one by
# one on an otherwise idle machine. A scenario waits on its fleet (timers, restores,
# pgbench) about a third of the time, which the other lane uses: two scenarios side by side
# took 1.4x their time alone. `ha` runs solo: it measures failover times, and its Patroni
# timing (ttl 8 s, loop_wait 1 s) is what a starved CPU disturbs (a cut-off leader that
# came back did not rejoin when it ran beside `default`). Each lane has a HOME of its own:
# Molecule installs the collection into ~/.ansible before each scenario, and two installs
# at once collide. Every scenario runs even after one fails (`molecule test --all` stops
# at the first); each line of a lane's output carries the scenario's name.
# COLUMNS: Molecule wraps its output at the terminal's width (80 without one); wider, each
# failed test's name stays on one line for the summary at the end.
MOLECULE_LANES ?= default backup,redis_sentinel
MOLECULE_SOLO ?= ha

molecule: prereqs venv images ## converge, idempotence, --check and verify each container fleet
	@listed=$$(echo $(MOLECULE_LANES) $(MOLECULE_SOLO) | tr ', ' '\n\n' | sort | xargs)
	[ "$$listed" = "$(SCENARIOS)" ] || { echo "MOLECULE_LANES and MOLECULE_SOLO ($$listed) must list each scenario once: $(SCENARIOS)"; exit 1; }
	results=$$(mktemp -d /var/tmp/pgfleet-molecule.XXXXXX); trap 'rm -rf "$$results"' EXIT
	lane() {
	  export HOME=$(LAB)/molecule-home/$${1//,/-}; mkdir -p "$$HOME"
	  for scenario in $${1//,/ }; do
	    t=$$(date +%s)
	    if COLUMNS=400 molecule test -s $$scenario 2>&1 | tee "$$results/$$scenario.log" | sed -u "s/^/[$$scenario] /"; then r=passed; else r=FAILED; fi
	    echo "=== pgfleet: molecule $$scenario $$r in $$(( $$(date +%s) - t )) s" | tee -a "$$results/summary"
	  done
	}
	for l in $(MOLECULE_LANES); do lane $$l & done
	wait
	for l in $(MOLECULE_SOLO); do lane $$l; done
	tee $(LAB)/molecule-times < "$$results/summary"
	failed=$$(awk '$$5 == "FAILED" {print $$4}' "$$results/summary" | xargs)
	# The failed tests' names, again at the end of `make test` (CI shows a run's last lines).
	for s in $$failed; do sed 's/\x1b\[[0-9;]*m//g' "$$results/$$s.log" | grep -a -E -o "(FAILED|ERROR) tests/[^ ]+( - .{0,160})?" | sed "s/^/  $$s: /"; done > $(LAB)/molecule-failures
	[ -z "$$failed" ] || { echo "molecule scenarios failed: $$failed"; cat $(LAB)/molecule-failures; exit 1; }

BENCHES := partition_vs_partman redis_aof_vs_off pgbench_tuned_vs_default pgbouncer_vs_direct pgbouncer_1000_clients pgbackrest_vs_pg_dump converge_scaling

# Each bench prints its samples and headlines; the run ends with one table of every ratio.
bench: prereqs venv ## side-by-side measurements that print ratios (not part of make test)
	@summary=$$(mktemp /var/tmp/pgfleet-bench-summary.XXXXXX); trap 'rm -f "$$summary"' EXIT
	for b in $(BENCHES); do echo "=== bench/$$b.py"; PGFLEET_BENCH_SUMMARY=$$summary python bench/$$b.py; done
	python bench/summary.py "$$summary"

clean: lab-destroy ## lab-destroy, then remove .venv and .lab
	rm -rf $(VENV) $(LAB)
