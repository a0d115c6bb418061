#!/usr/bin/env bash
# What the CPU cannot measure, on one GPU in about 6 minutes: GAN training images/s at the paper's sizes,
# and projector training (steps/s, minutes per LFW epoch, time per network) at the CPU preset's and the
# paper's sizes. Prints markdown tables. Run from the project root: scripts/gpu_check.sh [seconds per row]
set -euo pipefail
SECONDS_PER_ROW=${1:-4}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
echo "## GAN training (batch 16, R1 every step)"
python3 benchmarks/gan_speed.py --sizes paper preset --resolutions 8 16 32 64 128 --device cuda \
  --seconds "$SECONDS_PER_ROW"
echo "## Projector training, batch 16 triplets"
python3 benchmarks/train_speed.py --sizes cpu paper --recognizers sface facenet-vggface2 --device cuda \
  --batch 16 --seconds "$SECONDS_PER_ROW"
echo "## Projector training, batch 64 triplets"
python3 benchmarks/train_speed.py --sizes paper --recognizers sface facenet-vggface2 --device cuda \
  --batch 64 --seconds "$SECONDS_PER_ROW"
