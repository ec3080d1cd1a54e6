# webkvm: `make run` sets everything up and serves the panel; `make test` sets up and runs every test.
SHELL := /bin/bash
PY := .venv/bin/python
STAMPS := var/.stamps
WEBKVM_BIND ?= 127.0.0.1:8000

.PHONY: run setup system test lint lab-up lab-down clean bench

# Where no local libvirtd runs, bootstrap adds a demo host on libvirt's test driver, which the panel refuses
# unless WEBKVM_TEST_DRIVER is on: `make run` turns it on there (a value in the environment wins).
run: export WEBKVM_TEST_DRIVER ?= $(if $(wildcard /run/libvirt/libvirt-sock),false,true)
run: setup
	$(PY) manage.py bootstrap
	@echo "webkvm: serving on http://$(WEBKVM_BIND)/"
	exec $(PY) manage.py serve --bind $(WEBKVM_BIND)

setup: system $(STAMPS)/venv $(STAMPS)/npm
	$(PY) manage.py compilemessages -v0 --ignore=.venv --ignore=node_modules
	$(PY) manage.py migrate --noinput -v0
	$(PY) manage.py collectstatic --noinput -v0

system:
	@bash scripts/install-system-packages.sh

$(STAMPS)/venv: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv .venv
	.venv/bin/pip install -q --disable-pip-version-check -r requirements-dev.txt
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/npm: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@mkdir -p $(STAMPS) && touch $@

lint: $(STAMPS)/venv
	.venv/bin/ruff check .
	.venv/bin/mypy virt webkvm hosts instances console networks storage jobs api
	$(PY) manage.py check
	$(PY) manage.py makemigrations --check --dry-run -v0

# Every test: tests/unit on two workers (pytest-xdist: each its own test database and temporary folders), then
# all the others (tests/integration, tests/browser: they share the one lab) in one process; fails if either
# part fails. A machine without the cached cloud image (tests/cloud_image.py) builds it meanwhile, in the
# background: the tests that boot it come last and wait for it (one build per machine, under its lock).
# PYTEST_ARGS runs that subset alone, in one process, without the build.
test: setup lint
	@if [ -n "$(PYTEST_ARGS)" ]; then exec $(PY) -m pytest --durations=25 $(PYTEST_ARGS); fi; \
	$(PY) -m tests.cloud_image > var/cloud-image-build.log 2>&1 & \
	$(PY) -m pytest -n 2 --durations=25 tests/unit; unit=$$?; \
	$(PY) -m pytest --durations=25 tests --ignore=tests/unit; rest=$$?; \
	wait; exit $$(( unit ? unit : rest ))

bench: setup
	$(PY) lab/labctl.py up
	$(PY) bench/run.py

lab-up: system $(STAMPS)/venv
	$(PY) lab/labctl.py up

lab-down:
	python3 lab/labctl.py down

clean: lab-down
	rm -rf var/static $(STAMPS)
