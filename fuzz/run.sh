#!/usr/bin/env bash
# Runs the fuzz targets one after the other, each for FUZZ_SECONDS (60 by
# default), starting from the committed seeds plus whatever corpus earlier
# runs left in corpus/. Names targets to run only those.
#
#   fuzz/run.sh                       # every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh edge_chunk edge_session
#
# Everything runs under `nice -n 19` on one core, so that it does not
# disturb timing-sensitive tests sharing the machine. Crashes land in
# artifacts/<target>/; the script exits non-zero if any target crashed.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${FUZZ_SECONDS:-60}"
# cargo-fuzz needs nightly-only flags; the stable toolchain allows them
# with this.
export RUSTC_BOOTSTRAP=1

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

nice -n 19 cargo fuzz build

failed=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target"
  echo "== $target: ${seconds}s"
  if ! nice -n 19 cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "no crashes in: ${targets[*]}"
