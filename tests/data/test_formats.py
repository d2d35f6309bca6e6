"""Parsers of the raw IAPR / SAIAPR files, the lists format and the bag-of-words text."""

from __future__ import annotations

import pytest

from cmh.data import bag_of_words
from cmh.data.sources import iapr_lists, iapr_raw
from cmh.utils.errors import UserError

# Verbatim raw annotations from the real benchmark (raw-annotation-samples/00/676.eng and
# 12/12718.eng): a DESCRIPTION spanning two lines, and one whose closing tag is on the next line.
REAL_676 = (
    b"<DOC>\n<DOCNO>annotations/00/676.eng</DOCNO>\n<TITLE>School Visit</TITLE>\n<DESCRIPTION>"
    b"two tourists, both of them wearing backpacks, are visiting a school with ten pupils; the "
    b"woman is wearing brown shorts and a yellow sleveless top; the man is wearing long black "
    b"pants and a blue shirt;\nsome of the pupils are looking at them; brick walls and windows "
    b"in the background;</DESCRIPTION>\n<NOTES></NOTES>\n<LOCATION>Arequipa, Peru</LOCATION>\n"
    b"<DATE>March 2002</DATE>\n<IMAGE>images/00/676.jpg</IMAGE>\n"
    b"<THUMBNAIL>thumbnails/00/676.jpg</THUMBNAIL>\n</DOC>"
)
REAL_12718 = (
    b"<DOC>\n<DOCNO>annotations/12/12718.eng</DOCNO>\n<TITLE>The Plaza de Armas in Tarapoto"
    b"</TITLE>\n<DESCRIPTION>people and yellow tricycle taxis are standing on a grey street in "
    b"front of a park with grass, trees, bushes, palms and flags;\n</DESCRIPTION>\n<NOTES>"
    b"</NOTES>\n<LOCATION>Tarapoto, Peru</LOCATION>\n<DATE>June 2004</DATE>\n"
    b"<IMAGE>images/12/12718.jpg</IMAGE>\n<THUMBNAIL>thumbnails/12/12718.jpg</THUMBNAIL>\n</DOC>"
)


def parse_bytes(raw: bytes, source: str = "a.eng") -> str:
    return iapr_raw.parse_annotation(iapr_raw.decode_text(raw), source)


# --------------------------------------------------------------------------- annotations
def test_real_samples_multiline_and_trailing_newline() -> None:
    caption = parse_bytes(REAL_676)
    assert caption.startswith("two tourists, both of them wearing backpacks")
    assert "blue shirt; some of the pupils" in caption  # the line break became one space
    assert caption.endswith("windows in the background;")
    assert parse_bytes(REAL_12718).endswith("palms and flags;")  # trailing newline stripped


def test_cp1252_bytes_decode_to_latin_letters_and_quotes() -> None:
    raw = b"<DOC><DESCRIPTION>caf\xe9 in S\xe3o Paulo; \x93big\x94 \xfc</DESCRIPTION></DOC>"
    assert parse_bytes(raw) == "caf\u00e9 in S\u00e3o Paulo; \u201cbig\u201d \u00fc"


def test_bytes_cp1252_leaves_undefined_decode_as_latin1() -> None:
    assert iapr_raw.decode_text(b"a\x81b\x9d") == "a\x81b\x9d"


def test_utf8_file_is_read_as_utf8() -> None:
    raw = "<DESCRIPTION>caf\u00e9 au lait</DESCRIPTION>".encode()
    assert parse_bytes(raw) == "caf\u00e9 au lait"
    assert parse_bytes(b"\xef\xbb\xbf" + raw) == "caf\u00e9 au lait"  # with a BOM


def test_spaces_no_final_semicolon_and_bare_ampersand() -> None:
    raw = (
        b"<DOC>\n<TITLE>Fish & Chips</TITLE>\n<DESCRIPTION>  a man  &  a dog\n\n   "
        b"on a   beach </DESCRIPTION>\n</DOC>"
    )
    assert parse_bytes(raw) == "a man & a dog on a beach"


def test_empty_description_gives_empty_caption() -> None:
    assert parse_bytes(b"<DOC><DESCRIPTION>  \n </DESCRIPTION></DOC>") == ""


def test_missing_description_names_the_file() -> None:
    with pytest.raises(UserError, match=r"x/12\.eng: no <DESCRIPTION> tag"):
        parse_bytes(b"<DOC>\n<TITLE>t</TITLE>\n</DOC>", "x/12.eng")


def test_unclosed_description_names_file_and_line() -> None:
    raw = b"<DOC>\n<DOCNO>d</DOCNO>\n<TITLE>t</TITLE>\n<DESCRIPTION>a dog\n<NOTES></NOTES>\n</DOC>"
    with pytest.raises(UserError, match=r"x/12\.eng:4: <DESCRIPTION> opened here has no closing"):
        parse_bytes(raw, "x/12.eng")


def test_read_annotation_from_file(tmp_path) -> None:
    path = tmp_path / "676.eng"
    path.write_bytes(REAL_676)
    assert iapr_raw.read_annotation(path) == parse_bytes(REAL_676)
    with pytest.raises(UserError, match="cannot read"):
        iapr_raw.read_annotation(tmp_path / "missing.eng")


# --------------------------------------------------------------------------- SAIAPR
def test_saiapr_labels_parse_with_blank_lines_and_tabs() -> None:
    rows = iapr_raw.parse_saiapr_labels("25 1 7\n\n25\t2  40\r\n26 1 7\n", "labels.txt")
    assert [(r.image_id, r.segment_id, r.label_id, r.line) for r in rows] == [
        (25, 1, 7, 1),
        (25, 2, 40, 3),
        (26, 1, 7, 4),
    ]


@pytest.mark.parametrize("bad", ["25 1", "25 1 7 9", "25 one 7", "25 1 7.5"])
def test_saiapr_bad_line_message(bad: str) -> None:
    with pytest.raises(UserError) as info:
        iapr_raw.parse_saiapr_labels(f"25 1 7\n{bad}\n", "00/labels.txt")
    message = str(info.value)
    assert message.startswith("00/labels.txt:2: expected 3 integer fields ")
    assert "'image_id segment_id label_id', found" in message and repr(bad) in message


def test_wlist_tabs_spaces_and_names_with_spaces() -> None:
    names = iapr_raw.parse_wlist("1\tsky-blue\n2    man\n\n3\t  group of persons \n", "w.txt")
    assert names == {1: "sky-blue", 2: "man", 3: "group of persons"}


@pytest.mark.parametrize(("text", "match"), [
    ("1\tsky\nx\tman\n", r"w\.txt:2: expected 'label_id<TAB>label_name'"),
    ("1\tsky\n7\n", r"w\.txt:2: expected"),
    ("1\tsky\n1\tman\n", r"w\.txt:2: label id 1 is defined twice"),
])  # fmt: skip
def test_wlist_errors(text: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        iapr_raw.parse_wlist(text, "w.txt")


def test_label_id_missing_from_wlist_names_file_line_and_id() -> None:
    rows = iapr_raw.parse_saiapr_labels("25 1 7\n25 2 99\n", "00/labels.txt")
    with pytest.raises(UserError, match=r"00/labels\.txt:2: label id 99 is not in the label"):
        iapr_raw.check_label_ids(rows, {7: "tree"}, "00/labels.txt")


# --------------------------------------------------------------------------- lists format
def test_lists_small_widths() -> None:
    text = "00/25.jpg 0 2 0 1 1 0\n\n01/1025.jpg\t3 0 0 0 0 1\n"
    rows = iapr_lists.parse_lists(text, "iapr_train", n_bow=4, n_labels=2)
    assert [r.item_id for r in rows] == [25, 1025]
    assert (rows[0].image, rows[0].bow_indices, rows[0].bow_counts) == ("00/25.jpg", [1, 3], [2, 1])
    assert (rows[0].labels, rows[1].labels, rows[1].line) == ([0], [1], 3)


def test_lists_default_widths() -> None:
    values = ["0"] * 3167
    values[5], values[2912 + 254] = "4", "1"
    rows = iapr_lists.parse_lists(" ".join(["00/25.jpg", *values]), "iapr_test")
    assert (rows[0].bow_indices, rows[0].bow_counts, rows[0].labels) == ([5], [4], [254])


def test_lists_wrong_column_count_message() -> None:
    line = " ".join(["00/25.jpg"] + ["0"] * 2999)
    with pytest.raises(UserError) as info:
        iapr_lists.parse_lists(f"{line}\n", "lists/iapr_test")
    assert str(info.value) == (
        "lists/iapr_test:1: expected 3168 columns (image path, 2912 bag-of-words counts, "
        "255 label bits), found 3000"
    )


@pytest.mark.parametrize(("line", "match"), [
    ("00/25.jpg 1 x 0", r"f:2: column 3 is not a finite number: 'x'"),
    ("00/25.jpg 1 nan 0", r"f:2: column 3 is not a finite number"),
    ("00/25.jpg 1 -1 0", r"f:2: bag-of-words counts must be integers >= 0"),
    ("00/25.jpg 1 0.5 0", r"f:2: bag-of-words counts must be integers >= 0"),
    ("00/25.jpg 1 1 2", r"f:2: label bits must be 0 or 1"),
    ("00/abc.jpg 1 1 1", r"f:2: expected an image path 'NN/ID.jpg', found '00/abc.jpg'"),
])  # fmt: skip
def test_lists_bad_values(line: str, match: str) -> None:
    with pytest.raises(UserError, match=match):
        iapr_lists.parse_lists(f"00/1.jpg 0 0 1\n{line}\n", "f", n_bow=2, n_labels=1)


# --------------------------------------------------------------------------- bag of words
def test_tokenize_words_folds_case_accents_stop_words_and_short_words() -> None:
    words = bag_of_words.tokenize_words(
        "The CAF\u00c9 in S\u00e3o-Paulo; a b 2 dogs & a cat's tail"
    )
    assert words == ["cafe", "sao", "paulo", "dogs", "cat", "tail"]
    assert len(bag_of_words.STOP_WORDS) >= 90


def test_build_vocab_frequency_then_alphabetical() -> None:
    captions = ["dog cat cat", "bird dog cat", "ant bird"]
    assert bag_of_words.build_vocab(captions, size=10) == ["cat", "bird", "dog", "ant"]
    assert bag_of_words.build_vocab(captions, size=2) == ["cat", "bird"]


def test_bow_vector_counts_known_words_only() -> None:
    index = {"cat": 0, "dog": 1, "tree": 2}
    assert bag_of_words.bow_vector("Tree, the cat and a cat; a horse", index) == ([0, 2], [2, 1])
    assert bag_of_words.bow_vector("", index) == ([], [])


def test_lists_counts_written_as_floats() -> None:
    rows = iapr_lists.parse_lists("00/7.jpg 1.0 0 2.0 0.0 1.0\n", "f", n_bow=3, n_labels=2)
    assert (rows[0].bow_indices, rows[0].bow_counts, rows[0].labels) == ([0, 2], [1, 2], [1])
