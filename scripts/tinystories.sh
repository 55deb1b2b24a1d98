#!/usr/bin/env bash
# The handout's TinyStories run (vocab 10k); flags as scripts/run_recipe.sh, e.g. --cpu for 40M tokens.
exec "$(dirname "$0")/run_recipe.sh" --dataset tinystories "$@"
