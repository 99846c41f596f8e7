# The two commands of the README: `make run` and `make test`.
# Both install what they need (Debian packages, Python packages from PyPI)
# through scripts/setup.sh, then build with cargo.

SHELL := /bin/bash
CARGO ?= cargo
PYTHON := .venv/bin/python
# ONNX Runtime from the onnxruntime wheel in .venv (found after setup has run).
ORT_DYLIB_PATH ?= $(firstword $(wildcard $(CURDIR)/.venv/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*))
export ORT_DYLIB_PATH
# dicom-rs errors capture backtraces when RUST_BACKTRACE is set; tests feed
# thousands of bad files, so keep library backtraces off (panics keep theirs).
RUST_LIB_BACKTRACE ?= 0
export RUST_LIB_BACKTRACE

.PHONY: run demo test setup-run setup-test build fixtures lint unit deploy-check image-check image image-cuda bench bench-baseline bench-pipeline bench-reduced fuzz clean-fixtures

## run: set up, build, check the bundled models, and serve on embedded
## defaults (gRPC 127.0.0.1:50051, metrics 127.0.0.1:9464, data in ./data).
run: setup-run build
	./target/release/cxr-triage models check models
	./target/release/cxr-triage serve

## demo: score the bundled radiographs without the service.
demo: setup-run build
	./target/release/cxr-triage inspect test-images/bundled/*.dcm
	./target/release/cxr-triage analyze test-images/bundled/*.dcm

## test: set up, make the fixtures, and pass lint + every test + the
## offline validation of deploy/ (kustomize, Kubernetes schema, systemd).
test: setup-test fixtures lint unit deploy-check image-check

setup-run:
	scripts/setup.sh run

setup-test:
	scripts/setup.sh test

build:
	$(CARGO) build --release --locked -p cxr-triage -p cxr-synth

fixtures:
	PYTHON=$(PYTHON) bash test-images/make-fixtures.sh
	$(PYTHON) test-images/reference.py

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit:
	$(CARGO) test --workspace --locked

deploy-check:
	bash deploy/check.sh

## image-check: build the container image (from the debug binary the tests
## built) and run it: healthy, a film in by DICOM, SIGTERM (deploy/container);
## build the CUDA image from PyPI's wheels and inspect it (no GPU needed).
image-check:
	bash deploy/container/test.sh
	bash deploy/container/test-cuda.sh

## image: the release CPU image, localhost/cxr-triage:cpu, built offline.
image: setup-run build
	deploy/container/build.sh localhost/cxr-triage:cpu

## image-cuda: the release CUDA image, localhost/cxr-triage:cuda (onnxruntime-gpu
## and NVIDIA's CUDA 13 / cuDNN 9 wheels from PyPI; ~1.5 GB of downloads once).
image-cuda: setup-run build
	deploy/container/build.sh localhost/cxr-triage:cuda cuda

## bench: criterion benches of decode + VOI per transfer syntax, and of
## preprocess + inference per model and batch size; the service under
## concurrent clients (p50/p99 per stage, memory under 32 x 20 MB uploads).
bench: setup-test fixtures
	$(CARGO) bench --locked -p cxr-ingest --bench decode
	$(CARGO) bench --locked -p cxr-model --bench engine
	$(CARGO) bench --locked -p cxr-triage --bench service

## bench-baseline: ours vs pydicom on the same files, same run, with the ratio.
bench-baseline: setup-test fixtures build
	$(PYTHON) benches/baseline/compare.py

## bench-pipeline: `score` vs the Python pipeline a site would write
## (process pool on all cores, pydicom, numpy, OpenCV, onnxruntime, batches
## of 8), same model, same files, on full-size synthetic films and the RG1
## mix, with both ratios.
bench-pipeline: setup-test fixtures build
	$(PYTHON) benches/baseline/pipeline_compare.py

## bench-reduced: reduced-resolution JPEG 2000 decoding against full
## decoding on 1,000 synthetic films: speed, AUC, per-film changes.
bench-reduced: setup-test build
	benches/baseline/reduced_decode.sh

clean-fixtures:
	rm -rf test-images/generated
