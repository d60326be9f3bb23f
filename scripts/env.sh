# Sourced by the other scripts: one persistent cargo target directory per
# machine, so DuckDB's C++ (about 22 minutes) is compiled once and shared by
# the run command, the tests and CI on the same machine.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/scopewatch/target}"
# Tests and the binary share the release profile: one DuckDB build, not two.
export SCOPEWATCH_BIN="$CARGO_TARGET_DIR/release/scopewatch"
