"""A1111 prompt emphasis and long prompts: the parser against A1111's documented examples,
and the chunking rules on a word-per-token tokenizer. The encodings are tested with the
models, in test_generate.py."""

from __future__ import annotations

import pytest

from hub.core import emphasis


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.3 * 1.1 * 1.1),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.1**4),
                (".", 1.1),
            ],
        ),
        ("[[faint]] ratio: 2", [("faint", 1 / 1.1**2), (" ratio: 2", 1.0)]),
        ("word:1.2) stays text", [("word:1.2) stays text", 1.0)]),
        ("one BREAK two", [("one ", 1.0), ("BREAK", -1.0), (" two", 1.0)]),
        ("BREAKFAST", [("BREAKFAST", 1.0)]),
        ("", [("", 1.0)]),
    ],
)
def test_parse_matches_the_a1111_examples(text, expected):
    got = emphasis.parse(text)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [w for _, w in got] == pytest.approx([w for _, w in expected])


WORDS = {f"w{i}": 1000 + i for i in range(200)} | {",": 267}


def _tokenize(text: str) -> list[int]:
    return [WORDS[w] for w in text.replace(",", " , ").split()]


def test_chunks_of_75_with_comma_backtrack_and_break():
    words = [f"w{i}" for i in range(80)]
    plain = emphasis.chunks(emphasis.parse(" ".join(words)), _tokenize, 267)
    assert [len(c.ids) for c in plain] == [75, 5]
    assert plain[1].ids == [1075, 1076, 1077, 1078, 1079]

    with_comma = " ".join(words[:60]) + " , " + " ".join(words[60:80])
    split = emphasis.chunks(emphasis.parse(with_comma), _tokenize, 267)
    assert [len(c.ids) for c in split] == [61, 20]  # up to the comma, the rest moves on
    assert split[0].ids[-1] == 267 and split[1].ids[0] == 1060

    far = " ".join(words[:10]) + " , " + " ".join(words[10:80])  # comma 65 tokens back
    assert [len(c.ids) for c in emphasis.chunks(emphasis.parse(far), _tokenize, 267)] == [75, 6]

    broken = emphasis.chunks(emphasis.parse("w1 (w2:1.5) BREAK w3"), _tokenize, 267)
    assert [(c.ids, c.weights) for c in broken] == [([1001, 1002], [1.0, 1.5]), ([1003], [1.0])]
    ids, weights = emphasis.frame(broken[1], 49406, 49407, 0)
    assert ids == [49406, 1003, 49407] + [0] * 74 and len(weights) == 77


def test_a_multi_vector_embedding_is_never_split_between_chunks():
    # w0..w71 then a 5-vector embedding (first token 1150, the rest 1151..1154): 72 + 5 > 75
    words = " ".join(f"w{i}" for i in range(72))
    ids = {**WORDS, "e0": 1150, "e1": 1151, "e2": 1152, "e3": 1153, "e4": 1154}

    def tokenize(text: str) -> list[int]:
        return [ids[w] for w in text.split()]

    pieces = emphasis.parse(words + " e0 e1 e2 e3 e4 w72")
    got = emphasis.chunks(pieces, tokenize, 267, groups={1150: 5})
    assert [len(c.ids) for c in got] == [72, 6]
    assert got[1].ids[:5] == [1150, 1151, 1152, 1153, 1154]
    assert [len(c.ids) for c in emphasis.chunks(pieces, tokenize, 267)] == [75, 3]
