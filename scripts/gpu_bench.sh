#!/usr/bin/env bash
# Prepared GPU run for issue 5 (figures go to docs/benchmarks.md). Two calls of under 10 minutes each:
#   bash scripts/gpu_bench.sh core       hash grid, reference step, all fast paths eager, all fast paths compiled
#   bash scripts/gpu_bench.sh switches   each fast path alone on top of the reference
# The lent machines have no network and no diffusers/trimesh/PyMCubes, so carry wheels (Python 3.12 there;
# imageio-ffmpeg is not needed and, at 68 MB, over the carry limit):
#   here:    pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 \
#              --platform any -d .gpu-wheels diffusers trimesh PyMCubes importlib_metadata
#   device:  command "bash scripts/gpu_bench.sh core", carry [".gpu-wheels"], timeout_s 590
# Measured on one H200 (docs/benchmarks.md): core took 400 s; switches needs about 330 s (8 runs of ~40 s), more
# than the 285 s a 15-minute lease had left after core, so its reference now runs first.
# Everything it measures lands in $OUT (JSON per figure, and log.txt).
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
exec > >(tee "$OUT/log.txt") 2>&1
python3 -m pip install -q --no-deps .gpu-wheels/*.whl
python3 -m pip install -q --no-deps --no-build-isolation -e .
export HF_HUB_OFFLINE=1 WANDB_MODE=offline
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
git rev-parse HEAD 2>/dev/null || true

PART=${1:-core}
REF="guidance.config.batch_conditionings=false representation.config.backend=torch prior.config.dtype=fp16"
SPEED="psdkit bench speed recipes/psd_nerf.yaml --random-weights --device cuda"

if [ "$PART" = switches ]; then
  timeout 75 $SPEED --steps 10 --warmup 3 --json "$OUT/switch_reference.json" $REF
  for switch in "guidance.config.batch_conditionings=true" "representation.config.backend=triton" \
      "prior.config.channels_last=true" "reward.config.dtype=bf16" "reward.config.patch_embed=matmul" \
      "guidance.config.negative.every=2"; do
    name=$(echo "$switch" | sed 's/.*config\.//; s/=/-/')
    timeout 75 $SPEED --steps 10 --warmup 3 --json "$OUT/switch_$name.json" $REF "$switch"
  done
else

# 1. Hash encoding at psd_nerf's size (1 view x 64 x 64 rays x 64 samples, 16 levels x 2^19): each
#    implementation is checked against the torch path, then timed.
timeout 120 psdkit bench hashgrid --device cuda --points 262144 --levels 16 --log2-table 19 --repeats 20 \
  --json "$OUT/hashgrid.json"

# 2. A full-size PSD step (SD 2.1-base, ImageReward, random weights): reference = every fast path off.
timeout 200 $SPEED --steps 20 --warmup 3 --json "$OUT/speed_reference.json" $REF

# 3. Every fast path but compilation (each switch is also one key; see recipes/psd_nerf_fast.yaml).
timeout 120 psdkit bench speed recipes/psd_nerf_fast.yaml --random-weights --device cuda --steps 20 --warmup 3 \
  --json "$OUT/speed_fast_eager.json" prior.config.compile=none reward.config.compile=none

# 4. Every fast path, compiled (CUDA graphs for the prior): the first steps include compilation.
timeout 300 psdkit bench speed recipes/psd_nerf_fast.yaml --random-weights --device cuda --steps 20 --warmup 5 \
  --json "$OUT/speed_fast_compiled.json"

fi

python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for f in sorted(out.glob("*.json")):
    if f.stem == "hashgrid":
        continue
    r = json.loads(f.read_text())
    print(f"{f.stem:24s} {r['ms_per_step']:8.1f} ms/step  e_n update {r.get('neg_update_ms', 0):6.1f} ms  "
          f"10k steps {r['projected_minutes']:5.1f} min  peak {r['peak_memory_mb']:.0f} MiB")
PY
