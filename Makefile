# Two commands: `make run` (embedded demo) and `make test` (PostgreSQL + Redis).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/compliance
TEST_REDIS_URL ?= redis://127.0.0.1:6379/
TEST_VAR_DIR ?= $(CURDIR)/var/test
TEST_DATABASE_NAME ?= test_compliance
TEST_ENV = DATABASE_URL=$(TEST_DATABASE_URL) CELERY_BROKER_URL=$(TEST_REDIS_URL) \
	REDIS_URL=$(TEST_REDIS_URL) SECRET_KEY=test-only-not-secret \
	ALLOWED_HOSTS=localhost,127.0.0.1,testserver SECURE_SSL_REDIRECT=false \
	COMPLIANCE_VAR_DIR=$(TEST_VAR_DIR) TEST_DATABASE_NAME=$(TEST_DATABASE_NAME)

.PHONY: install run test lint format bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# With DATABASE_URL and CELERY_BROKER_URL set, the same demo runs on PostgreSQL and Redis.
run: export COMPLIANCE_LOCAL_DEMO = $(if $(DATABASE_URL),true,false)
run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo
	$(BIN)/python manage.py serve

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint
	@$(TEST_ENV) $(BIN)/python -m compliance.preflight
	$(TEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(TEST_ENV) $(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) var
