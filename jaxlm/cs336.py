"""CS336's `tests/adapters.py` interface, backed by jaxlm.

Same function names, argument order and meaning as the assignment's adapters, so the official test suite
can be pointed here (see README, "Using jaxlm with the CS336 test suite"). Inputs may be numpy or JAX
arrays (weights in CS336's `(d_out, d_in)` layout); outputs are JAX arrays.
"""
from __future__ import annotations

# ---- tokenizer -------------------------------------------------------------------------------------
# (tokenizer section: get_tokenizer, run_train_bpe)

# ---- model -----------------------------------------------------------------------------------------
# (model section)

# ---- training --------------------------------------------------------------------------------------
# (training section)
