#!/usr/bin/env bash
# What the CPU cannot measure, on one GPU in about 5 minutes: GAN training images/s at the paper's sizes,
# one whole epoch of projector training (LFW's training triplets) at the CPU preset's and the paper's
# sizes, and the evaluate stage's throughput per part with the stage time it adds up to. Prints markdown
# tables. Run from the project root: scripts/gpu_check.sh [seconds per row] [aligned faces folder]
set -euo pipefail
SECONDS_PER_ROW=${1:-4}
FACES=${2:-data/aligned}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, '| CPU cores', __import__('os').cpu_count())"
echo "## GAN training (batch 16, R1 every step)"
python3 benchmarks/gan_speed.py --sizes paper preset --resolutions 8 16 32 64 128 --device cuda \
  --seconds "$SECONDS_PER_ROW"
echo "## Projector training, batch 16 triplets: the CPU preset's size (median step), one whole epoch at the paper's"
python3 benchmarks/train_speed.py --sizes cpu --recognizers sface --device cuda --batch 16 --seconds "$SECONDS_PER_ROW"
python3 benchmarks/train_speed.py --sizes paper --recognizers sface --device cuda --batch 16 \
  --seconds "$SECONDS_PER_ROW" --full-epoch
echo "## Evaluation: throughput per part and the evaluate stage's time on LFW's test split"
python3 benchmarks/evaluate_speed.py --sizes cpu paper --device cuda --faces "$FACES" \
  --seconds "$SECONDS_PER_ROW" --presets params.yaml presets/evaluate-paper.args
