"""rnncore.demos.dates and the main command (issue 14): the date formats parse back to their date by an independent
reading (datetime.strptime), the two-digit year rule, a held-out set of dates never trained on, save/load, a fast
training run that must learn, and ``python -m rnncore``'s commands."""

import datetime
import math
import re
import subprocess
import sys

import numpy as np
import pytest

import rnncore as rc
from rnncore import __main__ as main_module
from rnncore.datasets import DATE_CASES, HUMAN_DATE_FORMATS, all_dates, date_vocabularies, make_dates
from rnncore.demos import _common, dates

MAY_3_1979 = datetime.date(1979, 5, 3)
# Issue 14's list, verbatim (Title case; the month of May is its own three-letter name)
ISSUE_EXAMPLES = ["3 May 1979", "03 May 1979", "3 May, 1979", "3 May 79", "May 3 1979", "May 3, 1979",
                  "3rd May 1979", "May 3rd, 1979", "Thursday, May 3, 1979", "Thu, May 3, 1979", "Thursday 3 May 1979",
                  "5/3/79", "5/3/1979", "03.05.79", "3.5.1979", "1979-05-03"]
# Each field as strptime reads it (%d and %m take "3" and "03"; the ordinal's suffix is removed first)
STRPTIME = {"{d}": "%d", "{dd}": "%d", "{do}": "%d", "{M}": "%m", "{MM}": "%m", "{yy}": "%y", "{yyyy}": "%Y",
            "{EEE}": "%a", "{EEEE}": "%A"}


def one(fmt, date, case="title", seed=0):
    """``date`` written in ``fmt`` and ``case`` (the month's width drawn from ``seed``)."""
    [(text, iso)] = make_dates(1, seed, formats=[fmt], cases=[case], among=[date])
    assert iso == date.isoformat()
    return text


def two_digit_year(yy):
    """The rule: 50-99 are 1950-1999, 00-49 are 2000-2049."""
    return 1900 + yy if yy >= 50 else 2000 + yy


def read_back(fmt, text):
    """``text`` parsed by datetime.strptime with ``fmt``'s fields as directives (either month width tried), the
    two-digit year rule applied over strptime's own (which maps 00-68 to 20xx)."""
    plain = re.sub(r"\b(\d{1,2})(st|nd|rd|th)\b", r"\1", text) if "{do}" in fmt else text
    pattern = fmt
    for field, directive in STRPTIME.items():
        pattern = pattern.replace(field, directive)
    for month in ("%B", "%b"):
        try:
            parsed = datetime.datetime.strptime(plain, pattern.replace("{Month}", month)).date()
        except ValueError:
            continue
        if "{yy}" in fmt:
            parsed = parsed.replace(year=two_digit_year(parsed.year % 100))
        return parsed
    raise AssertionError(f"{text!r} does not parse as {fmt!r}")


# ---- the data ----------------------------------------------------------------------------------------------------

def test_the_formats_are_issue_14s_list():
    assert [one(f, MAY_3_1979) for f in HUMAN_DATE_FORMATS] == ISSUE_EXAMPLES
    assert one("{EEEE}, {Month} {d}, {yyyy}", MAY_3_1979, "upper") == "THURSDAY, MAY 3, 1979"
    assert one("{EEE}, {Month} {d}, {yyyy}", MAY_3_1979, "lower") == "thu, may 3, 1979"


EDGE_DATES = [datetime.date(1950, 1, 1), datetime.date(2049, 12, 31), datetime.date(2000, 2, 29),
              datetime.date(1968, 9, 11), datetime.date(2022, 11, 22), datetime.date(1999, 12, 13),
              datetime.date(2031, 3, 21), datetime.date(1987, 8, 2)]


@pytest.mark.parametrize("fmt", HUMAN_DATE_FORMATS)
def test_every_format_case_and_month_width_parses_back_to_its_date(fmt):
    widths = set()
    for case in DATE_CASES:
        for date in EDGE_DATES:
            for seed in range(4):  # the month's width is drawn: both appear
                text = one(fmt, date, case, seed)
                assert read_back(fmt, text) == date, (fmt, text)
                names = re.findall(r"[A-Za-z]{3,}", re.sub(r"\d(st|nd|rd|th)", "", text))
                for name in names:
                    assert name == {"lower": name.lower(), "title": name.title(), "upper": name.upper()}[case]
                if "{Month}" in fmt and date.month == 9:
                    widths.add("september" in text.lower())
                if "{EEE" in fmt:  # strptime does not check the weekday against the date: check it here
                    assert date.strftime("%A" if "{EEEE}" in fmt else "%a").lower() in text.lower()
    assert widths in (set(), {True, False})


def test_ordinals():
    got = [one("{do}", datetime.date(2001, 1, d)) for d in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 24, 30, 31)]
    assert got == ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "24th", "30th", "31st"]


def test_two_digit_years_map_to_1950_2049():
    years = {d.year for d in all_dates()}
    assert min(years) == 1950 and max(years) == 2049 and len(years) == 100
    assert {two_digit_year(y % 100) for y in years} == years  # one year per two digits: the rule is a bijection
    for text, iso in make_dates(400, seed=5, formats=["{M}/{d}/{yy}", "{dd}.{MM}.{yy}", "{d} {Month} {yy}"],
                                cases=DATE_CASES):
        yy = int(re.findall(r"\d+", text)[-1])
        assert int(iso[:4]) == two_digit_year(yy), (text, iso)


def test_make_dates_defaults_are_unchanged_draw_for_draw():
    """The lower-case DATE_FORMATS pairs of the README example are those of the version before these options
    (recorded from it)."""
    assert make_dates(4, seed=0) == [("24 january, 2035", "2035-01-24"), ("12 sep 2013", "2013-09-12"),
                                     ("11 february 2001", "2001-02-11"), ("23 dec 1976", "1976-12-23")]
    assert make_dates(3, seed=1) == [("1997/04/27", "1997-04-27"), ("8 mar 2001", "2001-03-08"),
                                     ("08 jul 2025", "2025-07-08")]


def test_vocabularies_cover_every_case():
    human, _ = date_vocabularies()
    for text, _ in make_dates(3000, seed=1, formats=HUMAN_DATE_FORMATS, cases=DATE_CASES):
        assert human.decode(human.encode(text)) == text


def test_heldout_split_is_disjoint_by_date():
    pairs, training = dates.heldout_split(seed=3, heldout=2000)
    held = {iso for _, iso in pairs}
    assert len(pairs) == len(held) == 2000  # different dates, each written once
    assert held.isdisjoint(d.isoformat() for d in training)
    assert len(training) + len(held) == len(all_dates())
    assert pairs == dates.heldout_split(seed=3, heldout=2000)[0] != dates.heldout_split(seed=4, heldout=2000)[0]
    drawn = make_dates(20000, seed=9, formats=HUMAN_DATE_FORMATS, cases=DATE_CASES, among=training)
    assert held.isdisjoint(iso for _, iso in drawn)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(formats=["{d} {Mon}"]), ValueError, "formats"),
    (dict(formats="{d}"), TypeError, "formats"),
    (dict(cases=["title", "Camel"]), ValueError, "cases"),
    (dict(cases=[]), TypeError, "cases"),
    (dict(among=[]), TypeError, "among"),
    (dict(among=[datetime.date(2050, 1, 1)]), ValueError, "among"),
    (dict(among=[datetime.date(2000, 1, 1)], replace=False), ValueError, "n must be at most"),
    (dict(replace="no"), TypeError, "replace"),
])
def test_make_dates_rejects_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_dates(2, seed=0, **kwargs)


# ---- the model ---------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    """A fast-mode run, recording every pair it draws from its training dates (``among=``)."""
    seen = []

    def recording(*args, **kwargs):
        pairs = make_dates(*args, **kwargs)
        if kwargs.get("among") is not None:
            seen.extend(pairs)
        return pairs

    with pytest.MonkeyPatch.context() as m:
        m.setattr(dates, "make_dates", recording)
        lines = []
        model = dates.train(seed=0, fast=True, report=lines.append, bar=False)
    return model, lines, seen


def test_fast_mode_learns(trained):
    """An untrained model gets no date exactly right (checked); the fast recipe (2 x 10,000 pairs, ~5 s of CPU) must
    get most of them (measured: 99.9% for seed 0, 80.1% for seed 3)."""
    model, lines, _ = trained
    assert len(lines) == len(model.history) == dates.RECIPES["fast"][0]
    assert all("heldout exact" in line and "loss" in line for line in lines)
    first, last = model.history[0].metrics, model.history[-1].metrics
    assert last["loss"] < first["loss"]
    assert last["heldout_exact"] >= dates.TARGETS["fast"] == 0.5, lines
    untrained = dates.DateTranslator.create(seed=1)
    assert dates.exact_match(untrained, model.heldout_pairs[:300]) == 0.0
    # the attention aligns: each output character's largest weight is far above uniform (a dead relu energy gives
    # uniform rows and the decoder mean-pools the source)
    texts = [h for h, _ in model.heldout_pairs[:50]]
    assert np.mean([model.attention(t).max(axis=1).mean() * len(t) for t in texts]) > 4


def test_the_heldout_dates_are_never_trained_on(trained):
    model, _, seen = trained
    held = {iso for _, iso in model.heldout_pairs}
    steps, per_epoch = dates.RECIPES["fast"][:2]
    assert len(held) == 2000 and len(seen) == steps * per_epoch
    assert held.isdisjoint(iso for _, iso in seen)


def test_translate_attention_and_save_load_round_trip(trained, tmp_path):
    model, _, _ = trained
    texts = ["3 May 1979", "THURSDAY, MAY 3, 1979", "5/3/79", "03.05.79", "Sep 30th, 2049", "2000-02-29"]
    got = model.translate(texts)
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", g) for g in got)
    assert model.translate(texts, beam_size=3) == got  # the course's decoder reads no previous output
    w = model.attention(texts[1])
    assert w.shape == (10, len(texts[1])) and np.allclose(w.sum(axis=1), 1.0, atol=1e-5)
    rc.save(model, tmp_path / "dates.npz")
    loaded = rc.load(tmp_path / "dates.npz")  # no cls: the loader knows DateTranslator
    assert type(loaded) is dates.DateTranslator and loaded.variant == "course"
    assert loaded.source_vocab.tokens == model.source_vocab.tokens
    assert loaded.target_vocab.tokens == model.target_vocab.tokens
    assert loaded.translate(texts) == got and loaded.translate(texts, 2) == model.translate(texts, 2)
    np.testing.assert_array_equal(loaded.attention(texts[1]), w)
    heldout = [h for h, _ in model.heldout_pairs[:200]]
    assert loaded.translate(heldout) == model.translate(heldout)


@pytest.mark.parametrize("variant", ["bahdanau", "luong"])
def test_the_other_variants_train_translate_and_round_trip(variant, tmp_path):
    model = dates.DateTranslator.create(variant, encoder_hidden=8, decoder_hidden=16, seed=2)
    assert model.seq2seq.feed_targets and model.seq2seq.decoder.attention == dates.VARIANTS[variant]["attention"]
    opt = rc.optim.Adam(model, lr=0.01)
    pairs = make_dates(64, seed=0, formats=HUMAN_DATE_FORMATS, cases=DATE_CASES)
    before = model.loss(pairs)
    model.loss_backward()
    for _ in range(5):
        opt.zero_grad()
        model.loss(pairs)
        model.loss_backward()
        opt.step()
    assert model.loss(pairs) < before
    model.loss_backward()
    texts = [h for h, _ in pairs[:5]]
    rc.save(model, tmp_path / "m.npz")
    loaded = rc.load(tmp_path / "m.npz")
    assert loaded.variant == variant
    assert loaded.translate(texts, beam_size=3) == model.translate(texts, beam_size=3)
    assert model.attention(texts[0]).shape[1] == len(texts[0])


def test_bad_arguments():
    model = dates.DateTranslator.create(seed=0)
    with pytest.raises(TypeError, match="texts"):
        model.translate("3 May 1979")
    with pytest.raises(ValueError, match="texts"):
        model.translate(["3 May 1979", ""])
    with pytest.raises(ValueError, match="variant"):
        dates.DateTranslator.create("transformer")
    with pytest.raises(ValueError, match="beam_size"):
        model.translate(["3 May 1979"], beam_size=0)
    with pytest.raises(ValueError, match="vocabularies"):
        dates.DateTranslator(model.seq2seq, "abc", "0123456789-")


# ---- the shared pieces and the command -----------------------------------------------------------------------------

def test_progress_without_tqdm_prints_a_line_per_epoch(monkeypatch):
    monkeypatch.setattr(_common, "have", lambda name: False)
    lines = []
    progress = _common.Progress(2, 3, lines.append)
    for epoch in (1, 2):
        assert list(progress.epoch(range(3), epoch)) == [0, 1, 2]
        progress.epoch_done(epoch, {"loss": 0.5 / epoch, "heldout_exact": 0.25 * epoch})
    assert [h.epoch for h in progress.history] == [1, 2]
    assert re.match(r"  epoch 2/2: loss 0\.25, heldout exact 50\.00%  \(\d+\.\d s\)", lines[1]), lines
    assert _common.save_plot("never.png", lambda figure: None) is None


def test_progress_with_tqdm_reports_through_the_bar():
    pytest.importorskip("tqdm")
    lines = []
    progress = _common.Progress(1, 2, lines.append)
    assert progress.use_tqdm and list(progress.epoch(range(2), 1)) == [0, 1]
    progress.epoch_done(1, {"loss": 1.0})
    assert len(lines) == 1 and lines[0].startswith("  epoch 1/1: loss 1")
    assert not _common.Progress(1, 2, None).use_tqdm and not _common.Progress(1, 2, print, bar=False).use_tqdm


def test_child_seeds_are_reproducible():
    assert _common.child_seeds(3, 4) == _common.child_seeds(3, 4) != _common.child_seeds(4, 4)
    with pytest.raises(ValueError, match="seed"):
        _common.child_seeds(-1, 2)


def test_warmup_cosine_is_the_demos_schedule():
    """The LambdaLR factor the demos train with (and bench/dates.py gives torch's LambdaLR): (k + 1) / w up to 1, w a
    tenth of an epoch, times a cosine from 1 at step 0 to 0 at the last step and after it."""
    f = _common.warmup_cosine(100, 3)  # w = 10, the last step 300
    cosine = lambda k: 0.5 * (1 + math.cos(math.pi * k / 300))  # noqa: E731
    assert f(0) == pytest.approx(0.1) and f(4) == pytest.approx(0.5 * cosine(4))
    assert f(9) == pytest.approx(cosine(9)) and f(150) == pytest.approx(0.5)
    assert f(300) == f(1000) == 0.0
    assert _common.warmup_cosine(5, 1)(0) == 1.0  # under 10 steps an epoch: no warm-up


def test_training_pairs_are_drawn_from_the_training_dates_by_seed():
    held, training = dates.heldout_split(seed=3, heldout=2000)
    pairs = dates.training_pairs(5000, 7, training)
    assert len(pairs) == 5000
    assert pairs == dates.training_pairs(5000, 7, training) != dates.training_pairs(5000, 8, training)
    assert {iso for _, iso in held}.isdisjoint(iso for _, iso in pairs)
    assert pairs == make_dates(5000, 7, formats=HUMAN_DATE_FORMATS, cases=DATE_CASES, among=training)


def test_help_lists_every_command():
    out = subprocess.run([sys.executable, "-m", "rnncore", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    for command in main_module.COMMANDS:
        assert command in out.stdout


def test_the_main_command_reports_translations_attention_and_a_plot(trained, monkeypatch, capsys, tmp_path):
    """``python -m rnncore`` (dates, the default command) on the fast run's model: the verdict, ten translations
    with their attention, the heatmap when matplotlib is installed, the model saved."""
    model, _, _ = trained
    monkeypatch.setattr(dates, "train", lambda **kwargs: model)
    plot, saved = tmp_path / "attention.png", tmp_path / "model.npz"
    status = main_module.main(["--fast", "--plot", str(plot), "--save", str(saved)])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "held-out exact match" in out and "target 50.0%: met" in out
    rows = [line for line in out.splitlines() if " -> " in line]
    assert len(rows) == 10 and all("<-" in row for row in rows)
    assert sum("ok" in row.split("<-")[0] for row in rows) >= 7
    assert plot.exists() == _common.have("matplotlib")
    assert rc.load(saved).translate(["3 May 1979"]) == model.translate(["3 May 1979"])
    monkeypatch.setattr(model.history[-1], "metrics", dict(model.history[-1].metrics, heldout_exact=0.1))
    assert main_module.main(["dates", "--fast", "--no-plot"]) == 1
    assert "MISSED" in capsys.readouterr().out
