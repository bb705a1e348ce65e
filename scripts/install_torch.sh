#!/bin/sh
# Install torch 2.13.0 into the given interpreter's environment before anything else.
#   - with an NVIDIA GPU (nvidia-smi works): the default PyPI build, which carries CUDA;
#   - without: the CPU build (2.13.0+cpu). PyPI has no "+cpu" release, so this resolves only from a local wheel
#     directory named in pip's config (find-links; its dependencies still come from PyPI), else from the
#     PyTorch CPU index; either way no multi-GB CUDA wheels are pulled.
set -eu
PY="$1"
VERSION=2.13.0
if "$PY" -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$VERSION') else 1)" 2>/dev/null; then
    echo "torch $VERSION already installed"
    exit 0
fi
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then
    echo "CUDA GPU found: installing torch $VERSION with CUDA"
    "$PY" -m pip install --quiet "torch==$VERSION"
elif "$PY" -m pip install --quiet "torch==$VERSION+cpu" 2>/dev/null; then
    echo "installed torch $VERSION+cpu from the local wheel directory"
else
    echo "no CUDA: installing torch $VERSION (CPU build)"
    "$PY" -m pip install --quiet "torch==$VERSION+cpu" --extra-index-url https://download.pytorch.org/whl/cpu
fi
