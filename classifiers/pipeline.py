"""The spaCy pipeline: blank Chinese with jieba (words for Chinese and English alike), the
identifier entities, the rule layer, and `textcat_multilabel` in one of two architectures."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from typing import Any

import jieba
import spacy
from spacy.language import Language
from spacy.tokens import Doc
from spacy.util import get_words_and_spaces

import classifiers.components  # noqa: F401  (registers the factories)
from classifiers.components import TEXT_KEY, doc_text
from classifiers.labels import LABELS

TEXTCAT = "textcat_multilabel"

# jieba announces loading its dictionary at DEBUG on its own stderr handler, in every process.
jieba.setLogLevel(logging.WARNING)

_BOW: dict[str, Any] = {
    "@architectures": "spacy.TextCatBOW.v3",
    "exclusive_classes": False,
    "ngram_size": 2,
    "no_output_layer": False,
    # 2^18 rows x 12 labels is 12 MB of weights for ~3,000 examples: 2^16 collides little.
    "length": 65536,
}

_ENSEMBLE: dict[str, Any] = {
    "@architectures": "spacy.TextCatEnsemble.v2",
    "tok2vec": {
        "@architectures": "spacy.Tok2Vec.v2",
        "embed": {
            "@architectures": "spacy.MultiHashEmbed.v2",
            "width": 64,
            "rows": [2000, 2000, 500, 1000, 500],
            "attrs": ["NORM", "LOWER", "PREFIX", "SUFFIX", "SHAPE"],
            "include_static_vectors": False,
        },
        "encode": {
            "@architectures": "spacy.MaxoutWindowEncoder.v2",
            "width": 64,
            "window_size": 1,
            "maxout_pieces": 3,
            "depth": 2,
        },
    },
    "linear_model": _BOW,
}

# "chars": the same bag of words over more tokens, the character trigrams of English words
# (`feature_words(chars=True)`): a typo (delte, acount) still shares most of its trigrams with
# the word it misses. Chinese already has its characters (and so, as bigrams, its character
# pairs) in every architecture: no segmenter decides what the model can see.
ARCHITECTURES: dict[str, dict[str, Any]] = {"bow": _BOW, "ensemble": _ENSEMBLE, "chars": _BOW}
CHAR_ARCHITECTURES = frozenset({"chars"})


_CJK_CHAR = re.compile(r"[\u3400-\u9fff]")
_LONG_WORD = re.compile(r"[a-z]{6,}")
_WORD = re.compile(r"[a-z]{4,}")


def feature_words(text: str, chars: bool = False) -> list[str]:
    """Extra tokens the bag of words reads after the message's own words: each Chinese
    character (so 清空/清除/删除 share 清 and 删, and a segmentation jieba did differently
    still shares its characters and their bigrams) and, for English words of six letters or
    more, their first five (delete/deleted/deletion → delet_). With `chars`, also the
    character trigrams of English words of four letters or more, marked (del~, ele~, …).
    The text is normalised."""
    words = [*_CJK_CHAR.findall(text), *(word[:5] + "_" for word in _LONG_WORD.findall(text))]
    if chars:
        words += [
            word[i : i + 3] + "~" for word in _WORD.findall(text) for i in range(len(word) - 2)
        ]
    return words


class _FeatureTokenizer:
    """spaCy's Chinese tokenizer with jieba (dictionary segmentation, no HMM guesser: it
    costs a sixth of the time, and its guesses, new "words" merged from unknown characters,
    make a rare phrasing's features rarer still), followed by `feature_words`.

    The message's own text stays a prefix of `doc.text`, so character offsets into it hold;
    it is also kept whole in `doc.user_data` (components.doc_text), since spaCy rebuilds
    `doc.text` from the tokens at every access. Saving and loading go to the tokenizer inside.
    """

    def __init__(self, inner: Any, chars: bool = False) -> None:
        self.inner = inner
        self.chars = chars

    def __call__(self, text: str) -> Doc:
        words = [word for word in jieba.cut(text, cut_all=False, HMM=False) if word]
        words, spaces = get_words_and_spaces(words, text)
        doc = _doc(self.inner.vocab, words, spaces, feature_words(text, self.chars))
        doc.user_data[TEXT_KEY] = text
        doc.user_data[WORDS_KEY] = (words, spaces)
        return doc

    def pipe(self, texts: Iterable[str], batch_size: int = 1000) -> Iterator[Doc]:
        return (self(text) for text in texts)

    def __getattr__(self, name: str) -> Any:  # to_disk, from_bytes, …
        return getattr(self.inner, name)


WORDS_KEY = "rightsdesk.words"


def _doc(vocab: Any, words: list[str], spaces: list[bool], extra: list[str]) -> Doc:
    """The message's words, then (after a line break) the feature tokens."""
    if extra and words:
        words = [*words, "\n", *extra]
        spaces = [*spaces[:-1], False, False, *([True] * (len(extra) - 1)), False]
    return Doc(vocab, words=words, spaces=spaces)


def clause_doc(nlp: Language, doc: Doc, start: int, end: int) -> Doc:
    """A doc for the characters [start, end) of `doc`'s text, from the words jieba already
    made (no second segmentation), with that part's own feature tokens: what the textcat
    reads of one clause (classifiers.text.clauses)."""
    text = doc_text(doc)
    all_words, all_spaces = doc.user_data[WORDS_KEY]
    words: list[str] = []
    spaces: list[bool] = []
    at = 0
    for word, space in zip(all_words, all_spaces, strict=True):
        if at >= end:
            break
        if at >= start and not word.isspace():
            words.append(word)
            spaces.append(space)
        at += len(word) + space
    piece = text[start:end]
    chars = isinstance(nlp.tokenizer, _FeatureTokenizer) and nlp.tokenizer.chars
    clause = _doc(nlp.vocab, words or [piece], spaces or [False], feature_words(piece, chars))
    clause.user_data[TEXT_KEY] = piece
    return clause


def adapt_tokenizer(nlp: Language, architecture: str = "bow") -> Language:
    """What every pipeline of ours gets, freshly built or loaded: the feature tokenizer around
    spaCy's own (with character trigrams for the char architectures). It is not saved with the
    model, so both paths call this, the loader with the architecture from the meta file."""
    if not isinstance(nlp.tokenizer, _FeatureTokenizer):
        nlp.tokenizer = _FeatureTokenizer(nlp.tokenizer, architecture in CHAR_ARCHITECTURES)
    return nlp


def blank_pipeline(architecture: str) -> Language:
    """`architecture`: "bow", "chars" or "ensemble" (ARCHITECTURES)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}: expected one of {ARCHITECTURES}")
    blank = spacy.blank("zh", config={"nlp": {"tokenizer": {"segmenter": "jieba"}}})
    nlp = adapt_tokenizer(blank, architecture)
    nlp.add_pipe("rightsdesk_identifiers")
    nlp.add_pipe("rightsdesk_rules")
    textcat = nlp.add_pipe(TEXTCAT, config={"model": ARCHITECTURES[architecture]})
    for label in LABELS:
        textcat.add_label(label)  # type: ignore[attr-defined]
    return nlp
