"""Small generated data sets for examples and demos: human-readable dates and their ISO form (the course's
date-translation lab, "neural machine translation" of ``"thursday, may 3, 1979"`` into ``"1979-05-03"``).

``make_dates(n, seed)`` draws the pairs; ``CharVocab`` maps characters to token ids with the special tokens
``Seq2Seq`` expects (pad 0, bos 1, eos 2, unk 3); ``date_vocabularies()`` gives the two vocabularies that cover every
generated string; ``encode_pairs`` turns pairs into the padded arrays a seq2seq training step takes.
No third-party packages (the course used Faker and Babel): the formats are written out here, in English.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from ._validation import positive_int, seed_value

__all__ = ["make_dates", "CharVocab", "date_vocabularies", "encode_pairs", "PairBatch", "DATE_FORMATS"]

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_FIRST, _LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)  # two-digit years are unambiguous here


def _fields(d: datetime.date) -> dict[str, str]:
    month = _MONTHS[d.month - 1]
    return dict(d=str(d.day), dd=f"{d.day:02d}", M=str(d.month), MM=f"{d.month:02d}", MMM=month[:3], MMMM=month,
                yy=f"{d.year % 100:02d}", yyyy=str(d.year), EEE=_WEEKDAYS[d.weekday()][:3],
                EEEE=_WEEKDAYS[d.weekday()])


#: The human-readable formats (Babel-style field names; one is drawn uniformly per date). Numeric forms follow the
#: US order month/day ("3/7/79" is March 7) or the dotted day.month order ("07.03.79"), as Babel's en_US "short"
#: and the course's "dd.MM.YY".
DATE_FORMATS = (
    "{d} {MMM} {yyyy}", "{d} {MMMM} {yyyy}", "{dd} {MMM} {yyyy}", "{d} {MMM}, {yyyy}", "{d} {MMMM}, {yyyy}",
    "{dd}, {MMM} {yyyy}", "{MMMM} {d} {yyyy}", "{MMMM} {d}, {yyyy}", "{MMM} {d}, {yyyy}", "{M}/{d}/{yy}",
    "{dd}.{MM}.{yy}", "{EEEE}, {MMMM} {d}, {yyyy}", "{EEE}, {MMM} {d}, {yyyy}", "{EEEE} {d} {MMMM} {yyyy}",
    "{d} {MMM} {yy}", "{yyyy}/{MM}/{dd}",
)


def make_dates(n: int, seed: int | None = None) -> list[tuple[str, str]]:
    """``n`` pairs ``(human, iso)``: a date drawn uniformly from 1950-01-01 … 2049-12-31 written in one of
    ``DATE_FORMATS`` (lower case), and the same date as ``YYYY-MM-DD``. Reproducible for an int ``seed``
    (``np.random.default_rng(seed)``)."""
    n = positive_int("n", n)
    rng = np.random.default_rng(seed_value(seed))
    span = (_LAST - _FIRST).days + 1
    days = rng.integers(0, span, size=n)
    formats = rng.integers(0, len(DATE_FORMATS), size=n)
    pairs = []
    for day, fmt in zip(days, formats):
        d = _FIRST + datetime.timedelta(days=int(day))
        pairs.append((DATE_FORMATS[fmt].format(**_fields(d)), d.isoformat()))
    return pairs


class CharVocab:
    """Characters <-> token ids, with the special tokens first: ``<pad>`` 0, ``<s>`` 1 (bos), ``</s>`` 2 (eos),
    ``<unk>`` 3 (a character outside the vocabulary), then ``chars`` in the given order."""

    SPECIALS = ("<pad>", "<s>", "</s>", "<unk>")
    pad, bos, eos, unk = 0, 1, 2, 3

    def __init__(self, chars: Iterable[str]) -> None:
        chars = list(dict.fromkeys(chars))  # unique, in order
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise ValueError(f"chars: expected single characters, received {bad[:3]!r}")
        self.tokens: tuple[str, ...] = self.SPECIALS + tuple(chars)
        self._ids = {c: i for i, c in enumerate(self.tokens) if i >= len(self.SPECIALS)}

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        """The ids of ``text``'s characters (int64 [len(text)]; unknown characters give ``unk``)."""
        return np.array([self._ids.get(c, self.unk) for c in text], dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        """The characters of ``ids``, stopping at eos and skipping pad and bos (unk shows as ``?``)."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos:
                break
            if i in (self.pad, self.bos):
                continue
            out.append("?" if i == self.unk or not 0 <= i < len(self.tokens) else self.tokens[i])
        return "".join(out)


def date_vocabularies() -> tuple[CharVocab, CharVocab]:
    """(human vocabulary, ISO vocabulary) covering every string ``make_dates`` writes."""
    human = CharVocab(" ,./" + "0123456789" + "abcdefghijklmnopqrstuvwxyz")
    iso = CharVocab("-0123456789")
    return human, iso


class PairBatch(NamedTuple):
    """Padded arrays of a batch of (source, target) strings, batch-first, pad = 0:
    ``source [B, Tx]`` with ``source_lengths [B]``; ``target_inputs [B, Ty]`` = bos + target (teacher forcing) and
    ``targets [B, Ty]`` = target + eos, Ty = the longest target + 1."""
    source: np.ndarray
    source_lengths: np.ndarray
    target_inputs: np.ndarray
    targets: np.ndarray


def encode_pairs(pairs: Sequence[tuple[str, str]], source_vocab: CharVocab, target_vocab: CharVocab) -> PairBatch:
    """``pairs`` of strings as the padded id arrays of a seq2seq step (``PairBatch``)."""
    if len(pairs) == 0:
        raise ValueError("pairs: expected at least one (source, target) pair, received none")
    sources = [source_vocab.encode(s) for s, _ in pairs]
    targets = [target_vocab.encode(t) for _, t in pairs]
    B, Tx, Ty = len(pairs), max(1, max(len(s) for s in sources)), max(len(t) for t in targets) + 1
    source = np.zeros((B, Tx), np.int64)
    target_inputs = np.zeros((B, Ty), np.int64)
    target_out = np.zeros((B, Ty), np.int64)
    for b, (s, t) in enumerate(zip(sources, targets)):
        source[b, :len(s)] = s
        target_inputs[b, 0] = target_vocab.bos
        target_inputs[b, 1:len(t) + 1] = t
        target_out[b, :len(t)] = t
        target_out[b, len(t)] = target_vocab.eos
    lengths = np.array([len(s) for s in sources], np.int64)
    return PairBatch(source, lengths, target_inputs, target_out)
