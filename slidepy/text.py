"""Raw text to sparse features, the way a fitted scikit-learn `TfidfVectorizer` (or
`CountVectorizer`) does it, without importing scikit-learn.

A model trained through `slidepy.sklearn` inside `Pipeline(TfidfVectorizer(), SlideClassifier())`
and saved with `slidepy.sklearn.save_model` carries the vectorizer's vocabulary, idf weights and
settings in its checkpoint metadata (`meta["text_features"]`). `slidepy predict --text "..."`
rebuilds the vectorizer from them with `TextFeatures.from_meta` and featurises the text here.

Only the word analyzer with the built-in preprocessing is reproduced (lowercase, accent
stripping "ascii"/"unicode", `token_pattern`, stop-word list, word n-grams, binary / sublinear
tf, idf, l1/l2 norm). A vectorizer with a callable analyzer, tokenizer or preprocessor, or a
char analyzer, cannot be stored: `slidepy.sklearn.text_features_from_vectorizer` refuses it with
the reason.

Shapes: B texts, D = len(vocabulary) features; output CSR `indptr` (B+1,) int64, `indices`
(nnz,) int32 sorted within a row, `values` (nnz,) float32.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

import numpy as np

from .errors import SlidepyError

META_KEY = "text_features"
FORMAT_VERSION = 1


def _strip_accents_unicode(s: str) -> str:
    try:
        s.encode("ASCII", errors="strict")
        return s
    except UnicodeEncodeError:
        normalized = unicodedata.normalize("NFKD", s)
        return "".join(c for c in normalized if not unicodedata.combining(c))


def _strip_accents_ascii(s: str) -> str:
    return unicodedata.normalize("NFKD", s).encode("ASCII", "ignore").decode("ASCII")


@dataclass
class TextFeatures:
    """A fitted word-level tf(-idf) vectorizer: `vocabulary[i]` is the term of feature i."""

    vocabulary: list[str]
    idf: np.ndarray | None = None  # (D,) float; None = no idf (CountVectorizer, use_idf=False)
    lowercase: bool = True
    strip_accents: str | None = None  # None, "ascii" or "unicode"
    token_pattern: str = r"(?u)\b\w\w+\b"
    stop_words: list[str] | None = None
    ngram_range: tuple[int, int] = (1, 1)
    binary: bool = False
    sublinear_tf: bool = False
    norm: str | None = "l2"  # "l1", "l2" or None

    def __post_init__(self):
        self._index = {term: i for i, term in enumerate(self.vocabulary)}
        self._pattern = re.compile(self.token_pattern)
        if self._pattern.groups > 1:
            raise SlidepyError(f"token_pattern {self.token_pattern!r} has more than one capturing group")
        self._stop = frozenset(self.stop_words) if self.stop_words else None
        if self.idf is not None:
            self.idf = np.asarray(self.idf, dtype=np.float64)
            if self.idf.shape != (len(self.vocabulary),):
                raise SlidepyError(f"idf has shape {self.idf.shape} but the vocabulary has {len(self.vocabulary)} terms")

    @property
    def n_features(self) -> int:
        return len(self.vocabulary)

    def analyze(self, text: str) -> list[str]:
        """The terms (words and word n-grams) of `text`, in order, as sklearn's analyzer gives them."""
        if self.lowercase:
            text = text.lower()
        if self.strip_accents == "unicode":
            text = _strip_accents_unicode(text)
        elif self.strip_accents == "ascii":
            text = _strip_accents_ascii(text)
        tokens = self._pattern.findall(text)
        if self._stop is not None:
            tokens = [w for w in tokens if w not in self._stop]
        lo, hi = self.ngram_range
        if hi == 1:
            return tokens
        terms = list(tokens) if lo == 1 else []
        for n in range(max(lo, 2), min(hi, len(tokens)) + 1):
            terms.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
        return terms

    def transform(self, texts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR (indptr, indices, values) of `texts`; terms outside the vocabulary are dropped."""
        if isinstance(texts, str):
            texts = [texts]
        indptr = [0]
        indices: list[int] = []
        values: list[float] = []
        for text in texts:
            counts: dict[int, int] = {}
            for term in self.analyze(text):
                j = self._index.get(term)
                if j is not None:
                    counts[j] = counts.get(j, 0) + 1
            ids = sorted(counts)
            row = []
            for j in ids:
                tf = 1.0 if self.binary else float(counts[j])
                if self.sublinear_tf:
                    tf = 1.0 + math.log(tf)
                if self.idf is not None:
                    tf *= float(self.idf[j])
                row.append(tf)
            if self.norm == "l2":
                scale = math.sqrt(sum(v * v for v in row))
            elif self.norm == "l1":
                scale = sum(abs(v) for v in row)
            else:
                scale = 0.0
            if scale > 0:
                row = [v / scale for v in row]
            indices.extend(ids)
            values.extend(row)
            indptr.append(len(indices))
        return (np.asarray(indptr, np.int64), np.asarray(indices, np.int32), np.asarray(values, np.float32))

    # -- checkpoint metadata ----------------------------------------------------------------------

    def to_meta(self) -> dict:
        return {"version": FORMAT_VERSION, "vocabulary": list(self.vocabulary),
                "idf": None if self.idf is None else [float(v) for v in self.idf],
                "lowercase": bool(self.lowercase), "strip_accents": self.strip_accents,
                "token_pattern": self.token_pattern,
                "stop_words": None if self.stop_words is None else sorted(self.stop_words),
                "ngram_range": [int(self.ngram_range[0]), int(self.ngram_range[1])],
                "binary": bool(self.binary), "sublinear_tf": bool(self.sublinear_tf), "norm": self.norm}

    @classmethod
    def from_meta(cls, meta: dict) -> "TextFeatures":
        try:
            if meta.get("version") != FORMAT_VERSION:
                raise ValueError(f"version {meta.get('version')!r}, this slidepy reads {FORMAT_VERSION}")
            return cls(vocabulary=list(meta["vocabulary"]), idf=meta["idf"], lowercase=bool(meta["lowercase"]),
                       strip_accents=meta["strip_accents"], token_pattern=meta["token_pattern"],
                       stop_words=meta["stop_words"], ngram_range=tuple(meta["ngram_range"]),
                       binary=bool(meta["binary"]), sublinear_tf=bool(meta["sublinear_tf"]), norm=meta["norm"])
        except (KeyError, TypeError, ValueError, re.error) as exc:
            raise SlidepyError(f"the model's stored text vectorizer is unreadable ({type(exc).__name__}: {exc})") \
                from None
