"""Lexical diversity of an output: unigram entropy and distinct-n, and a degeneracy flag.

Repetitive text gets a deceptively low perplexity; these numbers sit beside it to expose that.
Inputs are token sequences (words or ids), so the functions work for any tokenisation.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Hashable, Sequence

DEGENERATE_DISTINCT2 = 0.5  # fewer than half of the bigrams distinct -> flagged as degenerate


def unigram_entropy_bits(tokens: Sequence[Hashable]) -> float:
    """Shannon entropy of the unigram distribution, bits; 0 for empty or constant text."""
    if not tokens:
        return 0.0
    counts = Counter(tokens)
    total = len(tokens)
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def distinct_n(tokens: Sequence[Hashable], n: int) -> float:
    """Distinct n-grams / all n-grams (0 when the text has fewer than n tokens)."""
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def is_degenerate(tokens: Sequence[Hashable], threshold: float = DEGENERATE_DISTINCT2) -> bool:
    """True when the text repeats itself: distinct-2 below `threshold`."""
    return distinct_n(tokens, 2) < threshold
