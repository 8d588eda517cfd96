# Targets mirror the `partnermatch` CLI. `make` prints this help.
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.install-stamp
PM := $(BIN)/partnermatch
SHARED_DATA ?= ../shared/data
OUT ?= bench-results

.DEFAULT_GOAL := help
.PHONY: help install serve test browser fuzz lint unit generate train simulate evaluate-leads evaluate-olist evaluate-maven evaluate-sentiment train-sentiment bench-train bench-generate bench-route drift bench-sentiment train-ipp evaluate-lookalike bench-ipp clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP) ## create .venv and install everything, pinned by constraints.txt

serve: install ## install, train a first model if none is registered, serve on localhost:3000
	$(PM) serve

test: install lint browser ## install, lint, type-check and run the tests (not the opt-in slow ones) beside a throwaway PostgreSQL
	.ci/with-postgres.sh $(BIN)/pytest -m "not slow" -q

# The recruiters' page test drives Debian's chromium through Playwright (never `playwright install`,
# which downloads a browser build). CI runs as root, so apt-get needs no sudo; idempotent.
browser: ## install Debian's chromium for the browser test, when it is missing
	command -v chromium || (apt-get update && apt-get install -y chromium)

fuzz: install ## Schemathesis, every check, 1,000 generated cases per API operation (a few minutes)
	$(BIN)/pytest -m fuzz -q -s tests/serving/test_contract.py

lint: install ## ruff (lint + format check), mypy and the architecture contract (import-linter)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

generate: install ## partnermatch generate (demo-sized) into data/ecosystem
	$(PM) generate --partners 2000 --deals 20000 --out data/ecosystem

train: install ## partnermatch train on the demo ecosystem, metrics to $(OUT)/train.json
	$(PM) train --json $(OUT)/train.json

simulate: install ## partnermatch simulate: a year of deals, frozen / live / retrained models vs round robin and the oracle
	$(PM) simulate --months 12 --json $(OUT)/simulate.json

evaluate-leads: install ## X Education leads (leak-free and leaky) vs logistic regression
	$(PM) data split-leads --source $(SHARED_DATA)/xeducation-lead-scoring/Leads.csv --out data/leads
	$(PM) evaluate leads --train data/leads/train.csv --test data/leads/test.csv --json $(OUT)/leads.json
	$(PM) evaluate leads --train data/leads/train.csv --test data/leads/test.csv --include-leaky --json $(OUT)/leads-leaky.json

evaluate-olist: install ## Olist funnel MQL -> won, time-split
	$(PM) data split-olist --source $(SHARED_DATA)/olist-marketing-funnel --out data/olist
	$(PM) evaluate olist --train-dir data/olist/train --test-dir data/olist/test --json $(OUT)/olist.json

evaluate-maven: install ## Maven CRM null-control (ROC-AUC ~0.5 leak-free)
	$(PM) evaluate maven --data-dir $(SHARED_DATA)/maven-crm-sales --json $(OUT)/maven.json

PHRASEBANK := $(SHARED_DATA)/financial-phrasebank/Sentences_50Agree.txt
GOEMOTIONS := $(SHARED_DATA)/goemotions

evaluate-sentiment: install ## sentiment vs VADER: PhraseBank and GoEmotions held out, and across the two
	$(PM) data split-phrasebank --source $(PHRASEBANK) --out data/phrasebank
	$(PM) evaluate sentiment --train data/phrasebank/train.txt --test data/phrasebank/test.txt --format phrasebank --json $(OUT)/sentiment-phrasebank.json
	$(PM) evaluate sentiment --train $(GOEMOTIONS)/train.tsv --test $(GOEMOTIONS)/dev.tsv --format goemotions --json $(OUT)/sentiment-goemotions.json
	$(PM) evaluate sentiment --train data/phrasebank/train.txt --test $(GOEMOTIONS)/dev.tsv --format phrasebank --test-format goemotions --json $(OUT)/sentiment-phrasebank-to-goemotions.json
	$(PM) evaluate sentiment --train $(GOEMOTIONS)/train.tsv --test data/phrasebank/test.txt --format goemotions --test-format phrasebank --json $(OUT)/sentiment-goemotions-to-phrasebank.json

train-sentiment: install ## partnermatch train-sentiment on PhraseBank + GoEmotions, register partnermatch-sentiment
	$(PM) train-sentiment --phrasebank $(PHRASEBANK) --goemotions $(GOEMOTIONS) --json $(OUT)/train-sentiment.json

bench-sentiment: install ## partnermatch bench sentiment: texts per second at batch 32 (needs train-sentiment)
	$(PM) bench sentiment --texts $(GOEMOTIONS)/dev.tsv --format goemotions --json $(OUT)/bench-sentiment.json

bench-train: install ## partnermatch bench train (1M rows)
	$(PM) bench train --json $(OUT)/bench-train.json

bench-generate: install ## partnermatch bench generate (100k partners, 1M rows)
	$(PM) bench generate --json $(OUT)/bench-generate.json

drift: install ## partnermatch drift: PSI of recent decisions vs the champion's training window (HTML + MLflow)
	$(PM) drift --json $(OUT)/drift.json --html $(OUT)/drift.html

bench-route: install ## partnermatch bench route: the HTTP service at 100k partners vs brute force
	$(PM) bench route --partners 100000 --requests 1000 --json $(OUT)/bench-route-100k.json

train-ipp: install ## partnermatch train-ipp: the ideal-partner-profile model on the demo ecosystem
	$(PM) train-ipp --json $(OUT)/train-ipp.json

evaluate-lookalike: install ## YC investors: lookalike fit ranking vs popularity and TF-IDF centroid
	$(PM) data yc-lookalike --source $(SHARED_DATA)/yc-startups-2005-2014/Startups.csv --out data/yc-lookalike.csv
	$(PM) evaluate lookalike --data data/yc-lookalike.csv --cutoff 2012-01-01 --json $(OUT)/lookalike-yc.json

bench-ipp: install ## partnermatch bench ipp: prospects per second in batch, p50/p99 per prospect
	$(PM) bench ipp --json $(OUT)/bench-ipp.json

clean: ## remove caches and local MLflow runs (keeps .venv)
	rm -rf .cache mlruns/mlflow.db mlruns/artifacts .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench-team-http
bench-team-http: install ## POST /team over HTTP vs the exact solver, server RSS with and without the team model
	$(PM) bench team --http --partners 2000 --instances 50 --json $(OUT)/bench-team-http-2k.json
