# Sourced by the scripts: makes `uv` available (bootstrapping it with pip when missing) and
# syncs the workspace environment from the lock file.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if command -v uv >/dev/null 2>&1; then
  uv() { command uv "$@"; }
else
  if ! python3 -m uv --version >/dev/null 2>&1; then
    echo "bootstrapping uv with pip ..." >&2
    python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv
  fi
  uv() { python3 -m uv "$@"; }
fi

sync_workspace() {
  # Every extra but llama-cpp, which compiles llama.cpp (see scripts/test-llama).
  uv sync --frozen --all-packages --all-extras --no-extra llama-cpp --quiet
}
