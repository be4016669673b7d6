#!/usr/bin/env bash
# The README's main job, on CPU in a few minutes: set up .venv/, render the built-in demo data,
# train a small Mask R-CNN from scratch, print the val AP table, export a test submission,
# score it against the demo's own test ground truth and draw the test predictions.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
vipseg=.venv/bin/vipseg
data=${VIPSEG_DEMO_DATA:-data/demo}
config=configs/exp/mask_rcnn/demo_cpu.yaml

if [ -f "$data/train.json" ]; then
  counts=$(.venv/bin/python -c 'import json, sys
print(", ".join("%s %d" % (s, len(json.load(open(sys.argv[1] + "/" + s + ".json"))["images"]))
                for s in ("train", "val")))' "$data")
  echo "== using the demo data already in $data ($counts images; the demo renders train 256," \
    "val 40: remove $data to render them)"
else
  echo "== rendering demo data into $data"
  "$vipseg" data demo --out "$data"
fi

if [ ! -f "$data/objects/index.json" ]; then
  echo "== writing the object bank of the demo's train split (copy-paste) into $data/objects"
  "$vipseg" data extract-objects "$data/train.json" --images "$data/train" --out "$data/objects" \
    --no-progress
fi

echo "== training ($config)"
"$vipseg" train "$config" demo --data-root "$data" "$@"
run=$(ls -1dt output/demo/exp_* | head -n 1)

echo "== scoring $run/best.pth on the val split"
"$vipseg" test "$config" "$run/best.pth" --valid --data-root "$data"

echo "== exporting the test submission"
"$vipseg" test "$config" "$run/best.pth" --out "$run/submission" --data-root "$data"

echo "== scoring the submission against the demo's test ground truth"
"$vipseg" eval "$data/test_gt.json" "$run/submission/submission.zip"

echo "== drawing the test predictions (a colour per instance)"
"$vipseg" predict "$config" "$run/best.pth" "$data/test" --out "$run/overlays" --per-instance \
  --data-root "$data"
echo "== done: run folder $run, submission $run/submission/submission.zip"
echo "== overlay picture: $run/overlays/$(ls -1 "$run/overlays" | grep -m1 '\.png$')"
