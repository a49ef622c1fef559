"""Input formats and their quirks, malformed rows, and staging for CsvExampleGen."""
from __future__ import annotations

import csv
import gzip
import os

import pytest

from emotion_ai.components import spec
from emotion_ai.data import readers

PIX48 = " ".join(["7"] * 48 * 48)
PIX96 = " ".join(["9"] * 96 * 96)
COORDS = ["40.5"] * 30


def _write(path, lines, newline="\n", gz=False):
    text = newline.join(lines) + newline
    if gz:
        with gzip.open(path, "wt", newline="") as f:
            f.write(text)
    else:
        path.write_text(text, newline="")
    return path


def _kp_line(coords=COORDS, pixels=PIX96):
    return ",".join([*coords, pixels])


KP_HEADER = ",".join([*spec.KEYPOINT_COLUMNS, "Image"])


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_emotion_plain_gzip_crlf_and_fer_header_quirks(tmp_path, gz, newline):
    """FER2013's own header is 'emotion, pixels,Usage' style: leading space, extra column."""
    name = "fer.csv.gz" if gz else "fer.csv"
    path = _write(tmp_path / name, ["emotion, pixels,Usage"] + [f"{i % 5},{PIX48},Training" for i in range(12)],
                  newline, gz)
    assert readers.detect_kind(path) == "emotion"
    result = readers.stage("emotion", [path], tmp_path / "root")
    assert (result.rows_read, result.rows_rejected) == (12, 0)
    with open(result.staged_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["emotion", "pixels"]
    assert rows[1] == ["0", PIX48] and rows[5][0] == "4"
    assert "\r" not in result.staged_path.read_text()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_keypoints_with_missing_coordinates(tmp_path, gz, newline):
    sparse = ["" if i >= 4 else "50.25" for i in range(30)]
    lines = [KP_HEADER] + [_kp_line() for _ in range(10)] + [_kp_line(sparse)]
    path = _write(tmp_path / ("kp.csv.gz" if gz else "kp.csv"), lines, newline, gz)
    assert readers.detect_kind(path) == "keypoints"
    result = readers.stage("keypoints", [path], tmp_path / "root")
    assert (result.rows_read, result.rows_rejected) == (11, 0)
    with open(result.staged_path, newline="") as f:
        last = list(csv.reader(f))[-1]
    assert last[:4] == ["50.2500"] * 4
    assert last[4:30] == ["-1.0000"] * 26  # MISSING_COORDINATE, kept as a float column


def test_malformed_rows_are_counted_and_reported_with_file_line_and_reason(tmp_path):
    short = " ".join(["1"] * 100)
    lines = ["emotion,pixels"] + [f"3,{PIX48}"] * 10 + [
        f"2,{short}",  # line 12: wrong pixel count
        "9," + PIX48,  # line 13: label outside 0..4
        "x," + PIX48,  # line 14: non-integer label
        "1," + PIX48.replace("7", "300", 1),  # line 15: pixel out of range
        "1," + PIX48.replace("7", "abc", 1),  # line 16: non-numeric pixel
        "1",  # line 17: wrong field count
    ]
    path = _write(tmp_path / "emotion.csv", lines)
    result = readers.stage("emotion", [path], tmp_path / "root")
    assert (result.rows_read, result.rows_rejected, result.rows_staged) == (16, 6, 10)
    with open(result.rejected_path, newline="") as f:
        rejected = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rejected] == [12, 13, 14, 15, 16, 17]
    assert all(r["file"] == str(path) for r in rejected)
    reasons = [r["reason"] for r in rejected]
    assert "expected 2304 pixels (48x48), got 100" in reasons[0]
    assert "label 9 outside 0..4" in reasons[1]
    assert "not an integer" in reasons[2]
    assert "out of range" in reasons[3]
    assert "non-numeric pixel value 'abc'" in reasons[4]
    assert "expected 2 fields, got 1" in reasons[5]
    assert rejected[1]["record"].startswith("9,7 7"), "the raw record is kept, nothing is lost"


def test_keypoint_outside_image_and_unlabelled_rows_are_rejected(tmp_path):
    outside = list(COORDS)
    outside[1] = "130.0"
    lines = [KP_HEADER] + [_kp_line() for _ in range(10)] + [_kp_line(outside), _kp_line([""] * 30),
                                                            _kp_line(["nan?"] + COORDS[1:])]
    result = readers.stage("keypoints", [_write(tmp_path / "kp.csv", lines)], tmp_path / "root")
    assert result.rows_rejected == 3
    text = result.rejected_path.read_text()
    assert "left_eye_center_y: coordinate 130.0 outside the 96x96 image" in text
    assert "no key point is labelled" in text
    assert "left_eye_center_x: non-numeric value 'nan?'" in text


def test_missing_empty_and_wrong_files_are_one_line_errors(tmp_path):
    with pytest.raises(readers.InputDataError, match="nope.csv: file not found"):
        readers.stage("emotion", [tmp_path / "nope.csv"], tmp_path / "root")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(readers.InputDataError, match="empty.csv: file is empty"):
        readers.stage("emotion", [empty], tmp_path / "root")
    wrong = _write(tmp_path / "wrong.csv", ["emotion,image"] + [f"1,{PIX48}"] * 20)
    with pytest.raises(readers.InputDataError, match="lacks column"):
        readers.stage("emotion", [wrong], tmp_path / "root")
    bad = _write(tmp_path / "bad.csv", ["emotion,pixels"] + ["7," + PIX48] * 20)
    with pytest.raises(readers.InputDataError, match=r"only 0 valid row\(s\) of 20.*bad.csv line 2"):
        readers.stage("emotion", [bad], tmp_path / "root")


def test_restaging_unchanged_data_keeps_the_file_so_the_tfx_cache_holds(tmp_path):
    (tmp_path / "in").mkdir()
    path = _write(tmp_path / "in" / "emotion.csv", ["emotion,pixels"] + [f"1,{PIX48}"] * 12)
    first = readers.stage("emotion", [path], tmp_path / "root")
    os.utime(first.staged_path, (1_000_000, 1_000_000))
    second = readers.stage("emotion", [path], tmp_path / "root")
    assert first.changed and not second.changed
    assert os.stat(second.staged_path).st_mtime == 1_000_000
    _write(tmp_path / "in" / "more.csv", ["emotion,pixels"] + [f"2,{PIX48}"] * 3)
    third = readers.stage("emotion", readers.find_csvs(tmp_path / "in")["emotion"], tmp_path / "root")
    assert third.changed and third.rows_read == 15


def test_find_csvs_groups_by_header_including_dated_folders(tmp_path):
    _write(tmp_path / "a.csv", ["emotion,pixels", f"1,{PIX48}"])
    (tmp_path / "2026-11-24").mkdir()
    _write(tmp_path / "2026-11-24" / "k.csv.gz", [KP_HEADER, _kp_line()], gz=True)
    (tmp_path / "notes.txt").write_text("ignored")
    found = readers.find_csvs(tmp_path)
    assert found["emotion"] == [tmp_path / "a.csv"]
    assert found["keypoints"] == [tmp_path / "2026-11-24" / "k.csv.gz"]
