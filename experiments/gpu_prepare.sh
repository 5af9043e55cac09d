#!/usr/bin/env bash
# Prepares, on the project's machine, what experiments/gpu_job.sh needs carried to a lent GPU:
#   .whl/                the Python packages the GPU image lacks, as wheels (pinned: the versions
#                        the earlier leases ran with);
#   data/cifar10_jpeg/   the CIFAR-10 archives (19 MB), for MODEL=resnet18_cifar10 and
#                        MODEL=deit_tiny_cifar10.
# Both folders are git-ignored and are lost when the VM is reset; this script makes them again
# (pip download from PyPI, then a copy from the shared data). It changes nothing else.
#
#   bash experiments/gpu_prepare.sh [SHARED_DATA]   # default ../shared/data
#   then, with the device tool: run(command="... bash experiments/gpu_job.sh $OUT ...",
#                                   carry=[".whl", "data/cifar10_jpeg"])
#
# The wheels' platform tags follow the device tool's notes (CPython 3.12, manylinux x86_64).
set -euo pipefail
cd "$(dirname "$0")/.."
SHARED=${1:-../shared/data}
WHEELS=(grain==0.2.18 array-record==0.8.6 ml-collections==1.1.0 tensorboardX==2.6.5
        portpicker==1.6.0)
EXTRA=(protobuf==7.36.2)  # installed by gpu_job.sh only if the imports fail without it
download() {
  local dest=$1; shift
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform manylinux1_x86_64 --platform any -d "$dest" "$@"
}
# the archives first: a wrong folder fails before any download or write
src="$SHARED/images/cifar10_jpeg"
for f in cifar10_train_jpg.tar.gz cifar10_test_jpg.tar.gz; do
  [ -f "$src/$f" ] || { echo "gpu_prepare: $src/$f is missing; pass the shared data folder" \
                             "as the first argument" >&2; exit 1; }
done
# one version of each package, as gpu_job.sh's install needs: earlier wheels here are replaced
mkdir -p .whl/extra && rm -f .whl/*.whl .whl/extra/*.whl
fail() { echo "gpu_prepare: pip download of $1 failed (pip's error above); check that PyPI is" \
              "reachable, then rerun" >&2; exit 1; }
download .whl "${WHEELS[@]}" || fail "the pinned wheels"
download .whl/extra "${EXTRA[@]}" || fail "${EXTRA[*]}"
mkdir -p data/cifar10_jpeg
cp "$src"/cifar10_*_jpg.tar.gz data/cifar10_jpeg/
echo "gpu_prepare: $(ls .whl/*.whl | wc -l) wheels in .whl/, $(ls .whl/extra/*.whl | wc -l) in" \
     ".whl/extra/, data/cifar10_jpeg/ $(du -sh data/cifar10_jpeg | cut -f1);" \
     "carry [\".whl\", \"data/cifar10_jpeg\"] ($(du -shc .whl data/cifar10_jpeg | tail -n 1 | cut -f1))"
