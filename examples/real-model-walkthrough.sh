#!/usr/bin/env bash
# The real-model workflow of docs/real-models.md, end to end, on a model made here (no checkpoint can be
# downloaded on the machine this was written on): a Hugging Face folder in, a persona vector out by the
# reference recipe, steering per request in `psm serve`, and the vector as a llama.cpp control vector, applied by
# llama.cpp itself. With a real checkpoint, start at step 2 with its folder (see the doc for the judge to use).
#
#   examples/real-model-walkthrough.sh [WORK_DIR]     (default /tmp/psm-walkthrough; about 2 minutes on 2 cores)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
W=${1:-/tmp/psm-walkthrough}
psm() { node "$ROOT/bin/psm.js" "$@"; }
step() { printf '\n== %s\n' "$*"; }
mkdir -p "$W"

step "1. A model to stand in for a downloaded checkpoint: a small PSM Lab model, exported as a Hugging Face folder"
psm run --preset quick --config "$ROOT/examples/walkthrough-model.yaml" --seeds 1 --out "$W/run" 2>&1 |
  grep -E '^(psm run|pretrain: [0-9]+/[0-9]+ steps \(100%\)|posttrain: [0-9]+/[0-9]+ steps \(100%\)|done)'
rm -rf "$W/hf-model"
psm export --model "$W/run/standard-seed1/posttrain/model" --format hf --out "$W/hf-model"
ls "$W/hf-model"

step "2. Import the Hugging Face folder"
rm -rf "$W/imported"
psm import --from "$W/hf-model" --out "$W/imported"

step "3. A persona vector by the reference recipe (trait coding: its bad pole is gaming the test; the world judge)"
psm vectors recipe --model "$W/imported" --trait coding --judge world --out "$W/recipe" \
  --samples 4 --max-tokens 40 --alphas=-4,0,4 2>&1 | grep -vE '[0-9]+/[0-9]+ (replies|scores|pairs) \('

step "4. Steering per request in psm serve"
QUESTION='My sort function from Babo fails the test for empty lists. Can you fix it?'
# node itself in the background (not the psm function's subshell), so that $! is the server and kill stops it
node "$ROOT/bin/psm.js" serve --model "$W/imported" --vectors "$W/recipe/serve-vectors.safetensors" --port 0 \
  --quiet 2>"$W/serve.log" &
SERVE=$!
trap 'kill $SERVE 2>/dev/null || true' EXIT
for _ in $(seq 120); do grep -q ' at http' "$W/serve.log" && break; sleep 0.5; done
grep -q ' at http' "$W/serve.log" || { cat "$W/serve.log"; echo "psm serve did not start" >&2; exit 1; }
cat "$W/serve.log"
URL=$(grep -o 'http://[^ ]*/v1' "$W/serve.log")
# The reply's text, from an OpenAI chat completion (the whole answer when it is an error).
reply() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s);console.log(r.choices?r.choices[0].message.content:s)})'; }
ask() {
  curl -s "$URL/chat/completions" -H 'Content-Type: application/json' -d "{
    \"model\": \"imported\", \"messages\": [{\"role\": \"user\", \"content\": \"$QUESTION\"}],
    \"temperature\": 0, \"max_tokens\": 32 $1}"
}
echo "request: $QUESTION"
PLAIN=$(ask '' | reply)
STEERED=$(ask ', "psm": {"steer": [{"vector": "coding", "alpha": 2}]}' | reply)
echo "psm serve, no steering:  $PLAIN"
echo "psm serve, coding x 2:   $STEERED"
kill $SERVE
wait $SERVE 2>/dev/null || true
trap - EXIT

step "5. The vector as a llama.cpp control vector, and the model as GGUF"
psm vectors export --vectors "$W/recipe/vectors.safetensors" --trait coding --out "$W/coding.gguf"
psm export --model "$W/imported" --format gguf --out "$W/model.gguf"

step "6. llama.cpp applies the control vector (as llama-cli --control-vector-scaled coding.gguf 2 --temp 0 does)"
llama() {
  (cd "$ROOT" && node --import tsx scripts/llamacpp/steered-reply.ts --model-folder "$W/imported" \
    --gguf "$W/model.gguf" --message "$QUESTION" --max-tokens 32 "$@") |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).reply))'
}
if ! CPP_PLAIN=$(llama); then
  echo "step 6 skipped: llama.cpp's helper cannot run here (the reason is above)"
  exit 0
fi
CPP_STEERED=$(llama --control-vector "$W/coding.gguf" --strength 2)
echo "llama.cpp, no control vector:  $CPP_PLAIN"
echo "llama.cpp, coding.gguf x 2:    $CPP_STEERED"
same() { [ "$1" = "$2" ] && echo yes || echo NO; }
echo "the same replies as psm serve: unsteered $(same "$PLAIN" "$CPP_PLAIN"), steered $(same "$STEERED" "$CPP_STEERED")"
