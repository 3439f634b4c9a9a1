#!/usr/bin/env bash
# Builds the deployable Azure Functions package: dist/signin-export.zip.
#
#   scripts/package.sh            # zig (glibc 2.28 baseline) when cargo-zigbuild is installed, else native
#   PACKAGE_BUILD=zig scripts/package.sh      # require cargo-zigbuild (pip install ziglang cargo-zigbuild)
#   PACKAGE_BUILD=native scripts/package.sh   # plain `cargo build --profile dist`; fails unless this machine's
#                                             # glibc yields a binary within the 2.28 floor
#
# Zip layout (what the Functions host expects at the app root):
#   host.json
#   signin-export                    (mode 0755: the custom handler, started as `signin-export serve`)
#   ExportSignIns/function.json      (from function/ExportSignIns/)
#   RefreshSignIns/function.json     (from function/RefreshSignIns/)
# dist/app/ holds the same tree unpacked (for `func start` from dist/app).
set -euo pipefail

cd "$(dirname "$0")/.."
root=$(pwd)
bin=signin-export
triple=x86_64-unknown-linux-gnu
glibc_floor=2.28
target_dir=${CARGO_TARGET_DIR:-$root/target}
mode=${PACKAGE_BUILD:-auto}

if [[ $(uname -m) != x86_64 && $mode != zig ]]; then
  echo "package.sh: this machine is $(uname -m); the Functions Linux workers are x86_64: use PACKAGE_BUILD=zig" >&2
  exit 1
fi
if [[ $mode == auto ]]; then
  if command -v cargo-zigbuild >/dev/null 2>&1 && python3 -c 'import ziglang' >/dev/null 2>&1; then
    mode=zig
  else
    mode=native
  fi
fi

case $mode in
  zig)
    # Links against glibc 2.28 symbols: runs on every Functions Linux image (Debian 11/12).
    echo "package.sh: cargo zigbuild --profile dist --no-default-features --target $triple.$glibc_floor" >&2
    cargo zigbuild --profile dist --locked --no-default-features --bin "$bin" --target "$triple.$glibc_floor"
    binary=$target_dir/$triple/dist/$bin
    ;;
  native)
    echo "package.sh: cargo build --profile dist --no-default-features (native toolchain; checked against the glibc $glibc_floor floor below)" >&2
    cargo build --profile dist --locked --no-default-features --bin "$bin"
    binary=$target_dir/dist/$bin
    ;;
  *)
    echo "package.sh: PACKAGE_BUILD must be auto, zig or native (got '$mode')" >&2
    exit 2
    ;;
esac

# --- checks: x86-64 ELF, rustls only (no OpenSSL), glibc floor --------------------------------
file_format=$(objdump -f "$binary" | sed -n 's/.*file format \(.*\)/\1/p')
if [[ $file_format != elf64-x86-64 ]]; then
  echo "package.sh: $binary is '$file_format', expected elf64-x86-64" >&2
  exit 1
fi
needed=$(objdump -p "$binary" | awk '/NEEDED/ {print $2}' | tr '\n' ' ')
if grep -Eq 'libssl|libcrypto' <<<"$needed"; then
  echo "package.sh: $binary links OpenSSL ($needed); the build must use rustls only" >&2
  exit 1
fi
# The glibc floor holds in every mode: a native build on a newer distribution links newer symbol
# versions (Debian 12: 2.34) and would not start on the Debian 11 based images (2.31).
max_glibc=$(objdump -T "$binary" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
if [[ -z $max_glibc ]]; then
  echo "package.sh: found no GLIBC_ symbol versions in $binary (objdump -T); cannot check the $glibc_floor floor" >&2
  exit 1
fi
if [[ $(printf '%s\n%s\n' "$max_glibc" "$glibc_floor" | sort -V | tail -1) != "$glibc_floor" ]]; then
  echo "package.sh: $binary ($mode build) needs glibc $max_glibc, more than the $glibc_floor floor of the Functions images;" \
    "build with PACKAGE_BUILD=zig (pip install ziglang cargo-zigbuild)" >&2
  exit 1
fi

# --- stage and zip (python3: keeps the execute bit via external_attr; no `zip` needed) --------
dist=$root/dist
rm -rf "$dist/app"
mkdir -p "$dist/app"
cp host.json "$dist/app/"
for dir in function/*/; do
  name=$(basename "$dir")
  mkdir -p "$dist/app/$name"
  cp "$dir/function.json" "$dist/app/$name/"
done
cp "$binary" "$dist/app/$bin"
strip "$dist/app/$bin" 2>/dev/null || true
chmod 0755 "$dist/app/$bin"

python3 - "$dist/app" "$dist/$bin.zip" <<'PY'
import os, sys, zipfile
app, out = sys.argv[1], sys.argv[2]
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for folder, dirs, files in os.walk(app):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            arcname = os.path.relpath(path, app)
            info = zipfile.ZipInfo(arcname, date_time=(2020, 1, 1, 0, 0, 0))
            info.create_system = 3  # Unix: external_attr carries the mode
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            info.external_attr = (0o100000 | mode) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                z.writestr(info, f.read())
os.replace(tmp, out)
PY

size=$(du -h "$dist/$bin.zip" | cut -f1)
echo "package.sh: built dist/$bin.zip ($size); binary needs glibc >= $max_glibc; links: $needed"
python3 -c 'import sys, zipfile
for i in zipfile.ZipFile(sys.argv[1]).infolist():
    print(f"  {(i.external_attr >> 16) & 0o777:04o} {i.file_size:>10} {i.filename}")' "$dist/$bin.zip"
