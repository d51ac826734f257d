"""Benchmark: the request classifier, single process, one core.

    .venv/bin/python bench/classify.py [--short 20000] [--long 500] [--batch-size 256] [--model DIR]

Prints messages/s for short chat lines and for long letters (over 3,000 characters) through
`RightsClassifier.predict_many` (normalisation, jieba, rules, identifiers, textcat, decision),
and, in the same run, the raw jieba tokenizer throughput of the same pipeline on the same short
lines: the limit the classifier cannot beat. Target: >= 5,000 short messages/s.

Inputs are the project's own examples (classifiers/data), cycled to the requested count.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

# One core: BLAS and friends would otherwise spread the textcat over both.
for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(name, "1")

# Run as `python bench/classify.py`, this folder would come first on the path.
sys.path[0] = str(Path(__file__).resolve().parent.parent)

from classifiers.dataset import load_examples  # noqa: E402
from classifiers.model import MODEL_DIR, RightsClassifier  # noqa: E402
from classifiers.text import joined, normalise  # noqa: E402


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:,.0f} messages/s ({count:,} in {seconds:.2f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=20_000)
    parser.add_argument("--long", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--model", type=Path, default=MODEL_DIR)
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    model = RightsClassifier.load(args.model)
    examples = load_examples()
    short_pool = [(ex.subject, ex.text) for ex in examples if len(ex.text) <= 60]
    long_pool = [(ex.subject, ex.text) for ex in examples if len(ex.text) > 3000]
    short = list(itertools.islice(itertools.cycle(short_pool), args.short))
    long = list(itertools.islice(itertools.cycle(long_pool), args.long))
    texts = [normalise(joined(s, t)) for s, t in short]
    list(model.predict_many(short[:1000]))  # warm: jieba's dictionary, caches

    def best(work: list[tuple[str, str]]) -> float:
        timings = []
        for _ in range(args.runs):
            started = time.perf_counter()
            for _ in model.predict_many(work, batch_size=args.batch_size):
                pass
            timings.append(time.perf_counter() - started)
        return min(timings)

    def short_and_tokenizer() -> tuple[float, float]:
        """Best of `runs` for the classifier and for its tokenizer alone on the same lines,
        run in turns so that a busy neighbour on a shared host slows both alike."""
        classified, tokenized = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            for _ in model.predict_many(short, batch_size=args.batch_size):
                pass
            classified.append(time.perf_counter() - started)
            started = time.perf_counter()
            for _ in model.nlp.tokenizer.pipe(texts, batch_size=args.batch_size):
                pass
            tokenized.append(time.perf_counter() - started)
        return min(classified), min(tokenized)

    mean_short = statistics.mean(len(t) for _, t in short)
    mean_long = statistics.mean(len(t) for _, t in long)
    print(f"model: {model.meta.get('architecture')} (pipeline {', '.join(model.nlp.pipe_names)})")
    classified, tokenized = short_and_tokenizer()
    print(f"short chat lines (mean {mean_short:.0f} chars): {rate(len(short), classified)}")
    print(f"long letters (mean {mean_long:,.0f} chars):   {rate(len(long), best(long))}")
    limit = rate(len(texts), tokenized)
    print(f"the pipeline's tokenizer alone (jieba + feature tokens), short lines: {limit}")
    print(f"share of the tokenizer's rate: {tokenized / classified:.2f} (target >= 0.4)")


if __name__ == "__main__":
    main()
