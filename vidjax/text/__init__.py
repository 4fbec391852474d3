"""Text: OpenAI CLIP's BPE tokenizer (`tokenize(texts, context_length=77, truncate=False)`)."""

from vidjax.text.tokenizer import VOCAB_SIZE, Tokenizer, tokenize

__all__ = ["VOCAB_SIZE", "Tokenizer", "tokenize"]
