"""rnncore.datasets' character vocabularies and the padded batches of string pairs."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from rnncore.datasets import CharVocab, date_vocabularies, encode_pairs


def one_by_one(vocab: CharVocab, text: str) -> list[int]:
    """The definition: each character's id, unk for a character outside the vocabulary."""
    return [vocab.tokens.index(c) if c in vocab.tokens[len(vocab.SPECIALS):] else vocab.unk for c in text]


texts = st.text(alphabet=st.characters(blacklist_categories=()), max_size=12)  # any code point, surrogates too


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=6))
def test_encode_pairs_matches_the_character_by_character_definition(pairs):
    human, iso = date_vocabularies()
    batch = encode_pairs(pairs, human, iso)
    B = len(pairs)
    assert batch.source.shape == (B, max(1, max(len(s) for s, _ in pairs)))
    assert batch.targets.shape == batch.target_inputs.shape == (B, max(len(t) for _, t in pairs) + 1)
    for b, (s, t) in enumerate(pairs):
        ids, target = one_by_one(human, s), one_by_one(iso, t)
        assert batch.source_lengths[b] == len(s) and human.encode(s).tolist() == ids
        assert batch.source[b].tolist() == ids + [human.pad] * (batch.source.shape[1] - len(s))
        pad = [iso.pad] * (batch.targets.shape[1] - len(t) - 1)
        assert batch.targets[b].tolist() == target + [iso.eos] + pad
        assert batch.target_inputs[b].tolist() == [iso.bos] + target + pad


def test_encode_batch_pads_and_names_a_non_string():
    vocab = CharVocab("ab")
    ids, lengths = vocab.encode_batch(["ab", "", "bza"])
    assert ids.tolist() == [[4, 5, 0], [0, 0, 0], [5, 3, 4]] and lengths.tolist() == [2, 0, 3]
    assert vocab.encode_batch([])[0].shape == (0, 0)
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got bytes"):
        vocab.encode_batch(["a", b"b"])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, got int"):
        vocab.encode_batch(["a", 3])
    with pytest.raises(TypeError, match=r"texts must be a list or tuple of str, got str"):
        vocab.encode_batch("ab")
    with pytest.raises(TypeError, match=r"^text must be a str, got int"):
        vocab.encode(3)
    assert vocab.encode("").dtype == np.int64
    human, iso = date_vocabularies()
    with pytest.raises(TypeError, match=r"pairs\[1\]\[0\] must be a str, got list"):
        encode_pairs([("1", "2"), (["1"], "2")], human, iso)
    with pytest.raises(TypeError, match=r"pairs\[0\]\[1\] must be a str, got int"):
        encode_pairs([("1", 2)], human, iso)
    with pytest.raises(TypeError, match=r"pairs\[0\] must be a \(str, str\) pair"):
        encode_pairs(["12"], human, iso)


def test_vocabularies_with_characters_anywhere_and_their_pickles():
    """Characters past the lookup table's range (astral) still encode; a pickle holds no table (small, and a
    vocabulary pickled before the table existed loads and encodes)."""
    import pickle

    vocab = CharVocab(["a", "\U0001F600", "\U0010FFFF", "\x00"])
    text = "a\U0001F600?\U0010FFFF\x00\U0001F601"
    assert vocab.encode(text).tolist() == one_by_one(vocab, text) == [4, 5, 3, 6, 7, 3]
    data = pickle.dumps(vocab)
    assert len(data) < 1000
    old = pickle.loads(data)
    assert "_table" not in vars(old) and old.encode(text).tolist() == one_by_one(vocab, text)
    assert CharVocab([]).encode("ab").tolist() == [3, 3]
