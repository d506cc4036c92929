"""Keyword extraction for the ``paper`` reward profile: spaCy lemmas with stop words removed.

The paper describes its consistency reward as comparing lemmatised noun keywords of the scene and
focus descriptions with the reasoning text. Two pipelines are supported, chosen once per process:

* ``en_core_web_sm`` when it is installed (tagger + lemmatizer): keywords are the lemmas of
  nouns and proper nouns that are not stop words. Install it from the spaCy release page with
  ``pip install en_core_web_sm@https://github.com/explosion/spacy-models/releases/download/en_core_web_sm-3.8.0/en_core_web_sm-3.8.0-py3-none-any.whl``
  (or ``python -m spacy download en_core_web_sm``); it is never downloaded at run time.
* otherwise a lookup pipeline: ``spacy.blank("en")`` plus the ``lemmatizer`` component in
  ``lookup`` mode, whose tables come from the ``spacy-lookups-data`` package. It has no part-of-
  speech tagger, so there is **no noun filter**: every alphabetic non-stop-word token longer than
  two characters is a keyword. A warning says so the first time the pipeline is built.

spaCy is imported only inside these functions, so ``import regiondial_bench`` stays light.
"""

from __future__ import annotations

import logging
import warnings
from functools import lru_cache
from typing import Any

logger = logging.getLogger(__name__)

FULL_MODEL = "en_core_web_sm"
NOUN_TAGS = frozenset({"NOUN", "PROPN"})


class KeywordPipelineError(RuntimeError):
    """Raised when neither spaCy pipeline can be built (missing packages)."""


@lru_cache(maxsize=1)
def keyword_pipeline() -> tuple[Any, bool]:
    """The spaCy pipeline used for keywords, and whether it tags parts of speech.

    Returns:
        ``(nlp, has_pos)``: ``has_pos`` is True for ``en_core_web_sm`` and False for the lookup
        fallback (which keeps every non-stop-word token instead of nouns only).

    Raises:
        KeywordPipelineError: spaCy or spacy-lookups-data is not installed.
    """
    try:
        import spacy
    except ImportError as exc:  # pragma: no cover - spacy is a dependency of the train extra
        raise KeywordPipelineError(
            "the 'paper' reward profile needs spaCy: pip install 'regiondial-bench[train]'"
        ) from exc
    try:
        nlp = spacy.load(FULL_MODEL, disable=["parser", "ner"])
        return nlp, True
    except OSError:
        pass
    warnings.warn(
        f"spaCy model {FULL_MODEL!r} is not installed; the 'paper' reward profile uses the lookup "
        "lemmatizer from spacy-lookups-data without a part-of-speech filter (all non-stop-word "
        "tokens count as keywords, not only nouns). See docs/rewards.md to install the model.",
        stacklevel=2,
    )
    nlp = spacy.blank("en")
    nlp.add_pipe("lemmatizer", config={"mode": "lookup"})
    try:
        nlp.initialize()
    except (OSError, ValueError) as exc:
        raise KeywordPipelineError(
            "the spaCy lookup lemmatizer needs its tables: pip install spacy-lookups-data"
        ) from exc
    return nlp, False


def _lemmas(text: str, *, nouns_only: bool) -> list[str]:
    nlp, has_pos = keyword_pipeline()
    out = []
    for token in nlp(text):
        if not token.is_alpha or token.is_stop or len(token.text) <= 2:
            continue
        if nouns_only and has_pos and token.pos_ not in NOUN_TAGS:
            continue
        lemma = (token.lemma_ or token.text).lower()
        if lemma and not nlp.vocab[lemma].is_stop:
            out.append(lemma)
    return out


def keywords(text: str) -> list[str]:
    """Distinct keyword lemmas of ``text``, in order of first appearance.

    Nouns only with ``en_core_web_sm``; every non-stop-word with the lookup fallback.

    >>> keywords("Two dogs are sleeping on the sofa")[:1]
    ['dog']
    """
    seen: dict[str, None] = {}
    for lemma in _lemmas(text, nouns_only=True):
        seen.setdefault(lemma, None)
    return list(seen)


def lemma_set(text: str) -> set[str]:
    """All lemmas of ``text`` (any part of speech, stop words removed), for membership tests.

    >>> sorted(lemma_set("the women were running"))
    ['run', 'woman']
    """
    return set(_lemmas(text, nouns_only=False))
