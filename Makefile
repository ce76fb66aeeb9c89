# The two commands a new user needs: `make dev` and `make test`.

CARGO ?= cargo

.PHONY: dev test setup services build lint fmt check-format web compose-check

## Installs what is missing, builds, and runs the studio on 127.0.0.1:8080.
dev: setup web
	$(CARGO) run --release --bin buildstream -- dev

## Runs every check and test; starts whatever the tests need.
test: setup services check-format lint compose-check web
	$(CARGO) test --workspace --all-targets

setup:
	@scripts/setup.sh

## Starts MariaDB, Redis and RabbitMQ on loopback where they are not running.
services:
	@scripts/services.sh

## Checks docker-compose.yml offline (no Docker engine needed).
compose-check:
	BUILDSTREAM_TOKEN_SECRET=check BUILDSTREAM_NODE_TOKEN=check \
	BUILDSTREAM_SERVICE_TOKEN=check MARIADB_ROOT_PASSWORD=check \
	docker-compose -f docker-compose.yml config -q

## Type-checks and builds the browser app into web/dist.
web:
	cd web && npm run build

build: setup
	$(CARGO) build --release --bin buildstream

lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings

check-format:
	$(CARGO) fmt --all --check

fmt:
	$(CARGO) fmt --all
