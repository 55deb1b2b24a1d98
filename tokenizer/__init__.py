"""Pure-Python byte-level BPE (never imports JAX): training, encoding, decoding, streaming."""
from tokenizer.bpe import train_bpe
from tokenizer.tokenizer import Tokenizer

__all__ = ["train_bpe", "Tokenizer"]
