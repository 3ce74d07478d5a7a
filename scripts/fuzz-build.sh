#!/usr/bin/env bash
# Builds the cargo-fuzz targets (egress/policy/fuzz) with the nightly toolchain, so a fuzz
# target that stops compiling fails CI. Installs cargo-fuzz from crates.io when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ=$ROOT/egress/policy/fuzz
if [[ ! -f "$FUZZ/Cargo.toml" ]]; then
	echo "fuzz-build: no fuzz crate at $FUZZ" >&2
	exit 1
fi
rustup toolchain list | grep -q '^nightly' || {
	echo "fuzz-build: the nightly toolchain is required (rustup toolchain install nightly)" >&2
	exit 1
}
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
	echo "fuzz-build: installing cargo-fuzz"
	cargo +nightly install --locked cargo-fuzz
fi
cd "$FUZZ"
cargo +nightly fuzz build
echo "fuzz-build: targets built: $(cargo +nightly fuzz list | tr '\n' ' ')"
