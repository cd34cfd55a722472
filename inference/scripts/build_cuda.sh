#!/usr/bin/env bash
# Builds anshin-inference with `--features cuda` on a machine without a CUDA toolkit or GPU, for an NVIDIA
# machine to run (CI never does this). The toolkit comes from NVIDIA's PyPI wheels (nvcc, headers, cuBLAS,
# cuRAND, NVRTC — the versions of the CUDA 13.0 toolkit on the H100 machines this was checked on), unpacked
# under $ANSHIN_CACHE/cuda-13.0; libcuda (the driver) is not in any wheel, so a stub with the driver API's
# symbol names is linked instead — the real driver is loaded at run time on the GPU machine.
#
#   inference/scripts/build_cuda.sh [cargo args…]      e.g. --example forward_bench --test smollm2
#
# Defaults: `cargo build --release --features cuda -p anshin-inference --bin anshin-inference`, target dir
# $ANSHIN_CACHE/target-cuda, kernels for compute capability 9.0 (H100/H200; CUDA_COMPUTE_CAP to change).
# The first build, candle's CUDA kernels included, took 12.5 min on 2 cores. Prints the binary's directory.
set -euo pipefail
source "$(dirname "$0")/../../scripts/env.sh"
root="$ANSHIN_CACHE/cuda-13.0"
cuda="$root/site/nvidia/cu13"
wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88
  nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88 nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35
  nvidia-cuda-nvrtc==13.0.88)

if [ ! -x "$cuda/bin/nvcc" ] || [ ! -f "$cuda/lib/stubs/libcuda.so" ]; then
  mkdir -p "$root/wheels"
  for w in "${wheels[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
      --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d "$root/wheels" "$w" >&2
  done
  rm -rf "$root/site" && mkdir -p "$root/site"
  for w in "$root"/wheels/*.whl; do unzip -q -o "$w" -d "$root/site"; done
  # The linker wants unversioned names; the wheels ship only the sonames.
  for l in libcublas libcublasLt libcudart libnvrtc; do ln -sf "$l.so.13" "$cuda/lib/$l.so"; done
  ln -sf libcurand.so.10 "$cuda/lib/libcurand.so"
  # Stub driver library: every driver-API function cudarc declares, as an empty symbol, soname libcuda.so.1.
  cudarc=$(cargo metadata --format-version 1 --features anshin-inference/cuda --manifest-path "$ANSHIN_ROOT/Cargo.toml" \
    | python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"]=="cudarc"))')
  sys_rs="$(dirname "$cudarc")/src/driver/sys/mod.rs"
  mkdir -p "$cuda/lib/stubs"
  { grep -oh 'fn cu[A-Za-z0-9_]*(' "$sys_rs" | sed 's/fn //; s/(//'
    grep -oh 'load::<_F>("cu[A-Za-z0-9_]*")' "$sys_rs" | sed 's/.*("//; s/")//'; } \
    | sort -u | awk '{print "void " $1 "(void) {}"}' > "$root/libcuda-stub.c"
  gcc -shared -fPIC -o "$cuda/lib/stubs/libcuda.so" -Wl,-soname,libcuda.so.1 "$root/libcuda-stub.c"
fi

export CUDA_HOME="$cuda" PATH="$cuda/bin:$PATH" CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" LIBRARY_PATH="$cuda/lib/stubs:$cuda/lib"
export CARGO_TARGET_DIR="$ANSHIN_CACHE/target-cuda"
[ $# -gt 0 ] || set -- --bin anshin-inference
cd "$ANSHIN_ROOT"
cargo build --release --features cuda -p anshin-inference "$@" >&2
echo "$CARGO_TARGET_DIR/release"
