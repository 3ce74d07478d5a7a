#!/usr/bin/env bash
# Builds the cargo-fuzz targets (egress/policy/fuzz, init/fuzz) with the nightly toolchain, so a
# fuzz target that stops compiling fails CI. Installs cargo-fuzz from crates.io when missing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FUZZ_CRATES=("$ROOT/egress/policy/fuzz" "$ROOT/init/fuzz")
for fuzz in "${FUZZ_CRATES[@]}"; do
	if [[ ! -f "$fuzz/Cargo.toml" ]]; then
		echo "fuzz-build: no fuzz crate at $fuzz" >&2
		exit 1
	fi
done
rustup toolchain list | grep -q '^nightly' || {
	echo "fuzz-build: the nightly toolchain is required (rustup toolchain install nightly)" >&2
	exit 1
}
if ! cargo +nightly fuzz --help >/dev/null 2>&1; then
	echo "fuzz-build: installing cargo-fuzz"
	cargo +nightly install --locked cargo-fuzz
fi
for fuzz in "${FUZZ_CRATES[@]}"; do
	(cd "$fuzz" && cargo +nightly fuzz build &&
		echo "fuzz-build: ${fuzz#"$ROOT"/}: $(cargo +nightly fuzz list | tr '\n' ' ')")
done
