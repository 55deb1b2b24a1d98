#!/usr/bin/env bash
# Download the CS336 Assignment 1 data sets into data/ (as the assignment README does):
# TinyStoriesV2-GPT4 train/valid and the CS336 OpenWebText sample (gunzipped).
#
#   scripts/download_data.sh [tinystories|owt|all]      (default: all; DATA_DIR=data)
#
# Files already present are skipped, so an interrupted download can be rerun; each file is fetched to
# a .part name and renamed only when complete.
set -euo pipefail

DATA_DIR=${DATA_DIR:-data}
WHICH=${1:-all}
TS_URL=https://huggingface.co/datasets/roneneldan/TinyStories/resolve/main
OWT_URL=https://huggingface.co/datasets/stanford-cs336/owt-sample/resolve/main

case "$WHICH" in
  tinystories|owt|all) ;;
  *) echo "usage: $0 [tinystories|owt|all]" >&2; exit 2 ;;
esac

fetch() {  # fetch URL FILE
  local url=$1 out=$2
  if [ -s "$out" ]; then echo "have $out"; return; fi
  echo "fetching $url"
  if command -v wget >/dev/null 2>&1; then
    wget -q --show-progress -O "$out.part" "$url"
  else
    curl -fL --progress-bar -o "$out.part" "$url"
  fi
  mv "$out.part" "$out"
}

fetch_gz() {  # fetch_gz URL FILE (FILE without .gz)
  local url=$1 out=$2
  if [ -s "$out" ]; then echo "have $out"; return; fi
  fetch "$url" "$out.gz"
  gunzip -f "$out.gz"
}

mkdir -p "$DATA_DIR"
cd "$DATA_DIR"
if [ "$WHICH" != owt ]; then
  fetch "$TS_URL/TinyStoriesV2-GPT4-train.txt" TinyStoriesV2-GPT4-train.txt
  fetch "$TS_URL/TinyStoriesV2-GPT4-valid.txt" TinyStoriesV2-GPT4-valid.txt
fi
if [ "$WHICH" != tinystories ]; then
  fetch_gz "$OWT_URL/owt_train.txt.gz" owt_train.txt
  fetch_gz "$OWT_URL/owt_valid.txt.gz" owt_valid.txt
fi
ls -l "$PWD"
