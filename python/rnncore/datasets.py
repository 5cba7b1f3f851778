"""Small generated data sets for examples and demos: human-readable dates and their ISO form (the course's
date-translation lab, "neural machine translation" of ``"thursday, may 3, 1979"`` into ``"1979-05-03"``).

``make_dates(n, seed)`` draws the pairs (by default lower case in ``DATE_FORMATS``; ``formats=HUMAN_DATE_FORMATS,
cases=DATE_CASES`` gives the formats and the lower / Title / UPPER names of ``rnncore.demos.dates``, and ``among=``
restricts the dates drawn, for a held-out split by date); ``CharVocab`` maps characters to token ids with the special
tokens ``Seq2Seq`` expects (pad 0, bos 1, eos 2, unk 3); ``date_vocabularies()`` gives the two vocabularies that
cover every generated string; ``encode_pairs`` turns pairs into the padded arrays a seq2seq training step takes.
No third-party packages (the course used Faker and Babel): the formats are written out here, in English.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ._validation import date_generator_options, flag, positive_int, seed_value, string_pairs, text_items, text_value

__all__ = ["make_dates", "CharVocab", "date_vocabularies", "encode_pairs", "PairBatch", "DATE_FORMATS",
           "HUMAN_DATE_FORMATS", "DATE_CASES", "DATE_RANGE", "all_dates"]

_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
           "november", "december")
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_FIRST, _LAST = datetime.date(1950, 1, 1), datetime.date(2049, 12, 31)  # two-digit years are unambiguous here
#: The first and last date ``make_dates`` writes: a two-digit year yy is 19yy for yy >= 50, else 20yy.
DATE_RANGE = (_FIRST, _LAST)
#: How ``HUMAN_DATE_FORMATS`` writes month and weekday names (one drawn per date): "may", "May", "MAY".
DATE_CASES = ("lower", "title", "upper")
_CASE = {"lower": str.lower, "title": str.title, "upper": str.upper}


def _ordinal(day: int) -> str:
    """3 -> "3rd", 11 -> "11th", 22 -> "22nd"."""
    suffix = "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
    return f"{day}{suffix}"


def _fields(d: datetime.date, case: str = "lower", full_month: bool = True) -> dict[str, str]:
    """The fields of ``d`` (Babel's names; ``Month``: the month's full or three-letter name as ``full_month``
    says, ``do``: the day as an ordinal), names written in ``case``."""
    write = _CASE[case]
    month, weekday = write(_MONTHS[d.month - 1]), write(_WEEKDAYS[d.weekday()])
    return dict(d=str(d.day), dd=f"{d.day:02d}", do=_ordinal(d.day), M=str(d.month), MM=f"{d.month:02d}",
                MMM=month[:3], MMMM=month, Month=month if full_month else month[:3], yy=f"{d.year % 100:02d}",
                yyyy=str(d.year), EEE=weekday[:3], EEEE=weekday)


#: The human-readable formats (Babel-style field names; one is drawn uniformly per date). Numeric forms follow the
#: US order month/day ("3/7/79" is March 7) or the dotted day.month order ("07.03.79"), as Babel's en_US "short"
#: and the course's "dd.MM.YY".
DATE_FORMATS = (
    "{d} {MMM} {yyyy}", "{d} {MMMM} {yyyy}", "{dd} {MMM} {yyyy}", "{d} {MMM}, {yyyy}", "{d} {MMMM}, {yyyy}",
    "{dd}, {MMM} {yyyy}", "{MMMM} {d} {yyyy}", "{MMMM} {d}, {yyyy}", "{MMM} {d}, {yyyy}", "{M}/{d}/{yy}",
    "{dd}.{MM}.{yy}", "{EEEE}, {MMMM} {d}, {yyyy}", "{EEE}, {MMM} {d}, {yyyy}", "{EEEE} {d} {MMMM} {yyyy}",
    "{d} {MMM} {yy}", "{yyyy}/{MM}/{dd}",
)

#: The formats of issue 14 and ``rnncore.demos.dates`` (May 3, 1979 shown): ``{Month}`` is the month's full or
#: three-letter name (drawn per date), the weekday's form is the format's; US month/day with slashes, day.month with
#: dots.
HUMAN_DATE_FORMATS = (
    "{d} {Month} {yyyy}",            # 3 May 1979
    "{dd} {Month} {yyyy}",           # 03 May 1979
    "{d} {Month}, {yyyy}",           # 3 May, 1979
    "{d} {Month} {yy}",              # 3 May 79
    "{Month} {d} {yyyy}",            # May 3 1979
    "{Month} {d}, {yyyy}",           # May 3, 1979
    "{do} {Month} {yyyy}",           # 3rd May 1979
    "{Month} {do}, {yyyy}",          # May 3rd, 1979
    "{EEEE}, {Month} {d}, {yyyy}",   # Thursday, May 3, 1979
    "{EEE}, {Month} {d}, {yyyy}",    # Thu, May 3, 1979
    "{EEEE} {d} {Month} {yyyy}",     # Thursday 3 May 1979
    "{M}/{d}/{yy}",                  # 5/3/79
    "{M}/{d}/{yyyy}",                # 5/3/1979
    "{dd}.{MM}.{yy}",                # 03.05.79
    "{d}.{M}.{yyyy}",                # 3.5.1979
    "{yyyy}-{MM}-{dd}",              # 1979-05-03
)


def all_dates() -> list[datetime.date]:
    """Every date ``make_dates`` may write, in order: 1950-01-01 ... 2049-12-31 (36,525 dates)."""
    return [_FIRST + datetime.timedelta(days=i) for i in range((_LAST - _FIRST).days + 1)]


def make_dates(n: int, seed: int | None = None, *, formats: Sequence[str] = DATE_FORMATS,
               cases: Sequence[str] = ("lower",), among: Sequence[datetime.date] | None = None,
               replace: bool = True) -> list[tuple[str, str]]:
    """``n`` pairs ``(human, iso)``: a date drawn uniformly from 1950-01-01 … 2049-12-31 (or from ``among``, e.g.
    the dates a held-out set leaves for training) written in one of ``formats`` (drawn uniformly) with its names in
    one of ``cases`` ("lower", "title", "upper"; drawn uniformly) and, for ``{Month}``, the full or the three-letter
    month name (drawn uniformly), and the same date as ``YYYY-MM-DD``. ``replace=False``: ``n`` different dates
    (a held-out set's). Reproducible for an int ``seed`` (``np.random.default_rng(seed)``); the defaults give the
    pairs of earlier versions, draw for draw."""
    n = positive_int("n", n)
    rng = np.random.default_rng(seed_value(seed))
    formats, cases, pool = date_generator_options(formats, cases, among, _fields(_FIRST), tuple(_CASE), DATE_RANGE)
    span = (_LAST - _FIRST).days + 1 if pool is None else len(pool)
    if flag("replace", replace):
        days = rng.integers(0, span, size=n)
    elif n > span:
        raise ValueError(f"n must be at most the {span} dates to draw from with replace=False, got {n}")
    else:
        days = rng.choice(span, size=n, replace=False)
    chosen = rng.integers(0, len(formats), size=n)
    # the defaults' pairs depend on the two draws above only; the name styles are drawn after them
    styles = rng.integers(0, len(cases), size=n) if len(cases) > 1 else np.zeros(n, np.int64)
    full = rng.integers(0, 2, size=n) if any("{Month}" in f for f in formats) else np.ones(n, np.int64)
    pairs = []
    for day, fmt, style, whole in zip(days, chosen, styles, full):
        d = _FIRST + datetime.timedelta(days=int(day)) if pool is None else pool[int(day)]
        pairs.append((formats[fmt].format(**_fields(d, cases[style], bool(whole))), d.isoformat()))
    return pairs


def _code_points(texts: Sequence[str]) -> np.ndarray:
    """The code points of the (checked) strings ``texts`` joined (uint32)."""
    return np.frombuffer("".join(texts).encode("utf-32-le", "surrogatepass"), np.uint32)


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

    # A lookup table by code point (unk where no character of the vocabulary) encodes a whole batch in a few NumPy
    # calls. Made on first use and never pickled: pickles stay small and those of older versions still load.
    _TABLE_LIMIT = 0x10000  # code points from here (rare) go through a dict: the table stays <= 512 KB

    def __getstate__(self) -> dict[str, Any]:
        state = dict(vars(self))
        state.pop("_table", None)
        return state

    def _lookup_table(self) -> np.ndarray:
        table = self.__dict__.get("_table")
        if table is None:
            low = {ord(c): i for c, i in self._ids.items() if ord(c) < self._TABLE_LIMIT}
            table = np.full(max(low, default=0) + 1, self.unk, np.int64)
            table[list(low)] = list(low.values())
            self._table = table
        return table

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str) -> np.ndarray:
        """The ids of ``text``'s characters (int64 [len(text)]; unknown characters give ``unk``)."""
        return self._lookup(_code_points([text_value("text", text)]))

    def encode_batch(self, texts: Sequence[str], name: str = "texts") -> tuple[np.ndarray, np.ndarray]:
        """``(ids [len(texts), longest] int64, padded with pad; lengths [len(texts)] int64)`` for a list or tuple of
        strings (``name``: the argument errors name)."""
        texts = text_items(name, texts)
        lengths = np.fromiter(map(len, texts), np.int64, len(texts))
        ids = np.full((len(texts), int(lengths.max(initial=0))), self.pad, np.int64)
        ids[np.arange(ids.shape[1]) < lengths[:, None]] = self._lookup(_code_points(texts))  # row by row
        return ids, lengths

    def _lookup(self, codes: np.ndarray) -> np.ndarray:
        table = self._lookup_table()
        inside = codes < len(table)
        ids = np.where(inside, table[np.where(inside, codes, 0)], self.unk)
        for c, i in self._ids.items():
            if ord(c) >= self._TABLE_LIMIT:
                ids[codes == ord(c)] = i
        return ids

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
    """(human vocabulary, ISO vocabulary) covering every string ``make_dates`` writes, in every format and case
    (characters added later go at the end, so the ids of earlier ones stay)."""
    human = CharVocab(" ,./" + "0123456789" + "abcdefghijklmnopqrstuvwxyz" + "-" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ")
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
    sources, target_texts = string_pairs("pairs", pairs)
    source, lengths = source_vocab.encode_batch(sources, "pairs[i][0]")
    targets, target_lengths = target_vocab.encode_batch(target_texts, "pairs[i][1]")
    if source.shape[1] == 0:  # every source empty: one padding step
        source = np.zeros((len(pairs), 1), np.int64)
    B, Ty = targets.shape[0], targets.shape[1] + 1
    target_inputs = np.zeros((B, Ty), np.int64)
    target_inputs[:, 0] = target_vocab.bos
    target_inputs[:, 1:] = targets
    target_out = np.zeros((B, Ty), np.int64)
    target_out[:, :-1] = targets
    target_out[np.arange(B), target_lengths] = target_vocab.eos
    return PairBatch(source, lengths, target_inputs, target_out)
