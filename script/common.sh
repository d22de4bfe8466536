# Paths shared by the scripts (sourced, not run).
CACHE=${SMARTSERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/smartserver}
UV_VERSION=0.13.9
UV="$CACHE/uv/bin/uv"
VENV=${SMARTSERVER_VENV:-$PWD/.venv}
VENV_AGENT=${SMARTSERVER_VENV_AGENT:-$PWD/.venv-agent}
MICROPYTHON="$CACHE/micropython/usr/bin/micropython"
export SMARTSERVER_MICROPYTHON=$MICROPYTHON
export UV_CACHE_DIR="$CACHE/uv-cache"
