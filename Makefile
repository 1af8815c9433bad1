# The two commands of the README: `make demo` (the main job) and `make test` (the whole suite).
# Both create .venv on first use; nothing else has to be installed by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt
DEMO_OUT ?= demo_output

.PHONY: demo test test-tools venv nnunet-venv clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) -e ".[test,slicer-test]"
	touch $(STAMP)

venv: $(STAMP)

# nnU-Net v2 (the baseline of `lungai baseline nnunet`) runs from its own environment, with the
# torch/torchvision pair of constraints-nnunet.txt: its trainer lookup imports torchvision, which does
# not import beside .venv's CPU torch (DEVELOPERS.md). The smoke test finds it as .venv-nnunet/bin.
NNUNET_VENV := .venv-nnunet
NNUNET_STAMP := $(NNUNET_VENV)/.installed

$(NNUNET_STAMP): constraints-nnunet.txt
	test -x $(NNUNET_VENV)/bin/python || $(PYTHON) -m venv $(NNUNET_VENV)
	$(NNUNET_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-compile \
		-c constraints-nnunet.txt nnunetv2
	touch $(NNUNET_STAMP)

nnunet-venv: $(NNUNET_STAMP)

demo: $(STAMP)
	$(BIN)/lungai demo -o $(DEMO_OUT) --overwrite

test: $(STAMP) test-tools $(NNUNET_STAMP)
	$(BIN)/python -m pytest --durations=15

# Programs the tests run: headless Chromium (report.html) and dciodvfy from dicom3tools (DICOM SEG).
# Installed from Debian when missing and apt-get can run (root, as in CI); otherwise those tests
# skip locally (and fail under CI=true).
test-tools:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v dciodvfy >/dev/null 2>&1 || missing="$$missing dicom3tools"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing$$missing from Debian for the tests"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; } >/dev/null \
			|| echo "warning: could not install$$missing; the tests that need it will not run"; \
	else \
		echo "warning:$$missing not installed (sudo apt-get install$$missing); the tests that need it will not run"; \
	fi

clean:
	rm -rf $(VENV) $(NNUNET_VENV) $(DEMO_OUT) build *.egg-info
