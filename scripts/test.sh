#!/usr/bin/env bash
# All tests, on burn's CPU backend (flex) and on its wgpu backend (cubecl's kernels, as on
# CUDA) running on Mesa's lavapipe, a Vulkan driver that executes on the CPU. Installs Debian's
# mesa-vulkan-drivers and libvulkan1 if no Vulkan driver is present. Without a usable adapter
# the wgpu suites fail loudly (tests/tests/wgpu_adapter.rs); `cargo test --workspace` runs the
# flex suites alone. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

have_vulkan() {
    compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null && ldconfig -p | grep -q 'libvulkan\.so\.1'
}
if ! have_vulkan; then
    echo "no Vulkan driver found: installing Debian's mesa-vulkan-drivers and libvulkan1" >&2
    packages=(mesa-vulkan-drivers libvulkan1)
    if [[ $(id -u) -eq 0 ]]; then
        apt-get install -y "${packages[@]}" >&2 || { apt-get update >&2 && apt-get install -y "${packages[@]}" >&2; }
    elif command -v sudo >/dev/null; then
        sudo apt-get install -y "${packages[@]}" >&2 || { sudo apt-get update >&2 && sudo apt-get install -y "${packages[@]}" >&2; }
    else
        echo "error: cannot install ${packages[*]} (not root, no sudo): install them, or run" >&2
        echo "       'cargo test --workspace' for the CPU-backend tests alone" >&2
        exit 2
    fi
fi
# wgpu's Vulkan loader complains on stderr without a runtime directory (harmless).
if [[ -z ${XDG_RUNTIME_DIR:-} || ! -d ${XDG_RUNTIME_DIR:-/nonexistent} ]]; then
    export XDG_RUNTIME_DIR
    XDG_RUNTIME_DIR=$(mktemp -d)
fi
exec cargo test --workspace --features wgpu "$@"
