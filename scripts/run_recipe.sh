#!/usr/bin/env bash
# The CS336 handout's LM recipe end to end on TinyStories or the OpenWebText sample:
# BPE tokenizer (with <|endoftext|>) -> uint16 token files -> training (checkpoints, JSONL log,
# evaluation) -> loss-curve PNG -> samples.
#
#   scripts/run_recipe.sh --dataset tinystories [--cpu] [--FLAG VALUE ...] [-- EXTRA jaxlm.train FLAGS]
#   (scripts/tinystories.sh and scripts/owt.sh call this with --dataset set.)
#
# Defaults follow the handout: context 256, d_model 512, d_ff 1344, 4 layers, 16 heads, RoPE theta 10000,
# 327,680,000 training tokens (40,000,000 with --cpu, the low-resource setting); vocab 10,000
# (TinyStories) or 32,000 (OWT). Every size can be changed by a flag or the environment variable of the
# same name in capitals (--batch-size 64 or BATCH_SIZE=64):
#   --train-text --valid-text  text files (default: $DATA_DIR/<dataset files>, see download_data.sh)
#   --out        run directory (default runs/<dataset>[-cpu])
#   --vocab-size --context-length --d-model --d-ff --num-layers --num-heads --rope-theta
#   --tokens     training tokens in all; steps = tokens / (batch-size x context-length)
#   --batch-size --lr --min-lr --warmup-steps --weight-decay --grad-clip
#   --eval-every --eval-batches --checkpoint-every --workers --prompt --num-samples --max-new-tokens
# Stages whose outputs exist are skipped (tokenizer, token files), and training resumes from the
# newest checkpoint in <out>/checkpoints, so an interrupted run continues where it stopped.
set -euo pipefail

DATASET=${DATASET:-}
CPU=${CPU:-0}
EXTRA=()
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) CPU=1; shift ;;
    --) shift; EXTRA=("$@"); break ;;
    --*=*) name=${1%%=*}; value=${1#*=}; shift; set -- "$name" "$value" "$@" ;;
    --*)
      [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
      var=$(printf '%s' "${1#--}" | tr 'a-z-' 'A-Z_')
      case "$var" in
        DATASET|TRAIN_TEXT|VALID_TEXT|DATA_DIR|OUT|VOCAB_SIZE|CONTEXT_LENGTH|D_MODEL|D_FF|NUM_LAYERS|\
NUM_HEADS|ROPE_THETA|TOKENS|BATCH_SIZE|LR|MIN_LR|WARMUP_STEPS|WEIGHT_DECAY|GRAD_CLIP|EVAL_EVERY|\
EVAL_BATCHES|CHECKPOINT_EVERY|WORKERS|PROMPT|NUM_SAMPLES|MAX_NEW_TOKENS|PYTHON) ;;
        *) echo "$0: unknown flag $1 (see the header of $0)" >&2; exit 2 ;;
      esac
      printf -v "$var" '%s' "$2"; shift 2 ;;
    *) echo "$0: unexpected argument $1" >&2; exit 2 ;;
  esac
done

DATA_DIR=${DATA_DIR:-data}
case "$DATASET" in
  tinystories)
    TRAIN_TEXT=${TRAIN_TEXT:-$DATA_DIR/TinyStoriesV2-GPT4-train.txt}
    VALID_TEXT=${VALID_TEXT:-$DATA_DIR/TinyStoriesV2-GPT4-valid.txt}
    VOCAB_SIZE=${VOCAB_SIZE:-10000}
    PROMPT=${PROMPT:-Once upon a time} ;;
  owt)
    TRAIN_TEXT=${TRAIN_TEXT:-$DATA_DIR/owt_train.txt}
    VALID_TEXT=${VALID_TEXT:-$DATA_DIR/owt_valid.txt}
    VOCAB_SIZE=${VOCAB_SIZE:-32000}
    PROMPT=${PROMPT:-The} ;;
  *) echo "$0: --dataset must be tinystories or owt" >&2; exit 2 ;;
esac

if [ "$CPU" = 1 ]; then
  TOKENS=${TOKENS:-40000000}; BATCH_SIZE=${BATCH_SIZE:-32}; OUT=${OUT:-runs/$DATASET-cpu}
else
  TOKENS=${TOKENS:-327680000}; BATCH_SIZE=${BATCH_SIZE:-128}; OUT=${OUT:-runs/$DATASET}
fi
CONTEXT_LENGTH=${CONTEXT_LENGTH:-256}
D_MODEL=${D_MODEL:-512}; D_FF=${D_FF:-1344}; NUM_LAYERS=${NUM_LAYERS:-4}; NUM_HEADS=${NUM_HEADS:-16}
ROPE_THETA=${ROPE_THETA:-10000}
LR=${LR:-2e-3}; MIN_LR=${MIN_LR:-2e-4}; WEIGHT_DECAY=${WEIGHT_DECAY:-0.1}; GRAD_CLIP=${GRAD_CLIP:-1.0}
STEPS=$(( TOKENS / (BATCH_SIZE * CONTEXT_LENGTH) ))
[ "$STEPS" -ge 1 ] || { echo "$0: --tokens $TOKENS is less than one batch" >&2; exit 2; }
WARMUP_STEPS=${WARMUP_STEPS:-$(( STEPS / 50 < 1000 ? STEPS / 50 : 1000 ))}  # 2% of the run, at most 1000
EVAL_EVERY=${EVAL_EVERY:-$(( STEPS / 20 > 0 ? STEPS / 20 : 1 ))}
EVAL_BATCHES=${EVAL_BATCHES:-20}
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-$(( STEPS / 10 > 0 ? STEPS / 10 : 1 ))}
WORKERS=${WORKERS:-$(nproc 2>/dev/null || echo 4)}
NUM_SAMPLES=${NUM_SAMPLES:-3}; MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-256}
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

for f in "$TRAIN_TEXT" "$VALID_TEXT"; do
  [ -f "$f" ] || { echo "$0: $f not found (run scripts/download_data.sh, or pass --train-text/--valid-text)" >&2; exit 2; }
done
mkdir -p "$OUT/data"
echo "== $DATASET: $STEPS steps x $BATCH_SIZE x $CONTEXT_LENGTH tokens = $(( STEPS * BATCH_SIZE * CONTEXT_LENGTH )) tokens -> $OUT"

echo "== 1/5 BPE tokenizer (vocab $VOCAB_SIZE)"
if [ -f "$OUT/tokenizer/merges.txt" ]; then echo "have $OUT/tokenizer"; else
  "$PYTHON" -m tokenizer.train --input "$TRAIN_TEXT" --vocab-size "$VOCAB_SIZE" \
    --special-token '<|endoftext|>' --out "$OUT/tokenizer" --workers "$WORKERS"
fi

echo "== 2/5 token files"
for split in train valid; do
  if [ "$split" = train ]; then text=$TRAIN_TEXT; else text=$VALID_TEXT; fi
  if [ -f "$OUT/data/$split.npy" ]; then echo "have $OUT/data/$split.npy"; else
    "$PYTHON" -m tokenizer.encode --tokenizer "$OUT/tokenizer" --input "$text" \
      --output "$OUT/data/$split.npy" --workers "$WORKERS"
  fi
done

echo "== 3/5 training"
"$PYTHON" -m jaxlm.train --train-data "$OUT/data/train.npy" --val-data "$OUT/data/valid.npy" \
  --tokenizer "$OUT/tokenizer" --vocab-size "$VOCAB_SIZE" --context-length "$CONTEXT_LENGTH" \
  --d-model "$D_MODEL" --d-ff "$D_FF" --num-layers "$NUM_LAYERS" --num-heads "$NUM_HEADS" \
  --rope-theta "$ROPE_THETA" --batch-size "$BATCH_SIZE" --max-steps "$STEPS" --lr "$LR" \
  --min-lr "$MIN_LR" --warmup-steps "$WARMUP_STEPS" --weight-decay "$WEIGHT_DECAY" \
  --grad-clip "$GRAD_CLIP" --eval-every "$EVAL_EVERY" --eval-batches "$EVAL_BATCHES" \
  --checkpoint-dir "$OUT/checkpoints" --checkpoint-every "$CHECKPOINT_EVERY" \
  --log-file "$OUT/log.jsonl" --resume ${EXTRA[@]+"${EXTRA[@]}"}

echo "== 4/5 loss curves"
"$PYTHON" -m jaxlm.plot "$OUT/log.jsonl" --out "$OUT/loss.png" --title "$DATASET" || echo "(plot skipped)"

echo "== 5/5 samples"
"$PYTHON" -m jaxlm.generate --checkpoint "$OUT/checkpoints" --prompt "$PROMPT" \
  --num-samples "$NUM_SAMPLES" --max-new-tokens "$MAX_NEW_TOKENS" | tee "$OUT/samples.txt"
