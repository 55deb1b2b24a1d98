#!/usr/bin/env bash
# The handout's OpenWebText-sample run (vocab 32k); flags as scripts/run_recipe.sh, e.g. --cpu.
exec "$(dirname "$0")/run_recipe.sh" --dataset owt "$@"
