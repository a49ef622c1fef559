"""Input formats and their quirks, malformed rows, and the ExampleGen that checks every row."""
from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from emotion_ai.components import csv_rows, spec
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


def _stage(kind, paths, tmp_path):
    return csv_rows.stage(kind, paths, tmp_path / "out" / "staged.csv", tmp_path / "out" / "rejected.csv")


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_emotion_plain_gzip_crlf_and_fer_header_quirks(tmp_path, gz, newline):
    """FER2013's own header is 'emotion, pixels,Usage' style: leading space, extra column."""
    name = "fer.csv.gz" if gz else "fer.csv"
    path = _write(tmp_path / name, ["emotion, pixels,Usage"] + [f"{i % 5},{PIX48},Training" for i in range(12)],
                  newline, gz)
    assert csv_rows.detect_kind(path) == "emotion"
    result = _stage("emotion", [path], tmp_path)
    assert (result.rows_read, result.rows_rejected) == (12, 0)
    with open(result.staged_path, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["emotion", "pixels", *spec.IMAGE_STATISTICS]
    assert rows[1][:2] == ["0", PIX48] and rows[5][0] == "4"
    assert "\r" not in Path(result.staged_path).read_text()


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_keypoints_with_missing_coordinates(tmp_path, gz, newline):
    sparse = ["" if i >= 4 else "50.25" for i in range(30)]
    lines = [KP_HEADER] + [_kp_line() for _ in range(10)] + [_kp_line(sparse)]
    path = _write(tmp_path / ("kp.csv.gz" if gz else "kp.csv"), lines, newline, gz)
    assert csv_rows.detect_kind(path) == "keypoints"
    result = _stage("keypoints", [path], tmp_path)
    assert (result.rows_read, result.rows_rejected) == (11, 0)
    with open(result.staged_path, newline="") as f:
        last = list(csv.reader(f))[-1]
    assert last[:4] == ["50.2500"] * 4
    assert last[4:30] == ["-1.0000"] * 26  # MISSING_COORDINATE, kept as a float column


def test_malformed_rows_are_counted_and_reported_with_file_line_and_reason(tmp_path):
    short = " ".join(["1"] * 100)
    lines = ["emotion,pixels"] + [f"3,{PIX48}"] * 10 + [
        f"2,{short}",  # line 12: wrong pixel count
        "9," + PIX48,  # line 13: a label outside 0..4 is the schema's to flag, for the whole span
        "x," + PIX48,  # line 14: non-integer label
        "1," + PIX48.replace("7", "300", 1),  # line 15: pixel out of range
        "1," + PIX48.replace("7", "abc", 1),  # line 16: non-numeric pixel
        "1",  # line 17: wrong field count
    ]
    path = _write(tmp_path / "emotion.csv", lines)
    result = _stage("emotion", [path], tmp_path)
    assert (result.rows_read, result.rows_rejected, result.rows_staged) == (16, 5, 11)
    with open(result.rejected_path, newline="") as f:
        rejected = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rejected] == [12, 14, 15, 16, 17]
    assert all(r["file"] == str(path) for r in rejected)
    reasons = [r["reason"] for r in rejected]
    assert "expected 2304 pixels (48x48), got 100" in reasons[0]
    assert "not an integer" in reasons[1]
    assert "out of range" in reasons[2]
    assert "non-numeric pixel value 'abc'" in reasons[3]
    assert "expected 2 fields, got 1" in reasons[4]
    # Scoring rows outside the pipeline (evaluate), where no ExampleValidator looks:
    assert csv_rows.outside_domain("emotion", ["9", PIX48]) == "emotion: 9 outside the schema's 0..4"
    assert csv_rows.outside_domain("emotion", ["4", PIX48]) is None
    assert rejected[1]["record"].startswith("x,7 7"), "the raw record is kept, nothing is lost"


def test_keypoint_outside_image_and_unlabelled_rows_are_rejected(tmp_path):
    outside = list(COORDS)
    outside[1] = "130.0"
    lines = [KP_HEADER] + [_kp_line() for _ in range(10)] + [_kp_line(outside), _kp_line([""] * 30),
                                                            _kp_line(["nan?"] + COORDS[1:])]
    result = _stage("keypoints", [_write(tmp_path / "kp.csv", lines)], tmp_path)
    assert result.rows_rejected == 3
    text = Path(result.rejected_path).read_text()
    assert "left_eye_center_y: coordinate 130.0 outside the 96x96 image" in text
    assert "no key point is labelled" in text
    assert "left_eye_center_x: non-numeric value 'nan?'" in text


def test_missing_empty_and_wrong_files_are_one_line_errors(tmp_path):
    with pytest.raises(csv_rows.InputDataError, match="nope.csv: file not found"):
        _stage("emotion", [tmp_path / "nope.csv"], tmp_path)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(csv_rows.InputDataError, match="empty.csv: file is empty"):
        _stage("emotion", [empty], tmp_path)
    wrong = _write(tmp_path / "wrong.csv", ["emotion,image"] + [f"1,{PIX48}"] * 20)
    with pytest.raises(csv_rows.InputDataError, match="lacks column"):
        _stage("emotion", [wrong], tmp_path)
    bad = _write(tmp_path / "bad.csv", ["emotion,pixels"] + ["x," + PIX48] * 20)
    with pytest.raises(csv_rows.InputDataError, match=r"only 0 valid row\(s\) of 20.*bad.csv line 2"):
        _stage("emotion", [bad], tmp_path)


def _run_example_gen(tmp_path, branch: str, data, span_window: int = 10_000):
    """The ExampleGen executor of ``branch`` on the folder ``data``, run as TFX runs it (its
    exec properties as JSON); its Examples artifact."""
    from tfx.types import standard_artifacts

    from emotion_ai.components import validating_example_gen as veg
    from emotion_ai.pipelines import config

    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    component = veg.ValidatingCsvExampleGen(branch, str(data), span_window=span_window,
                                            output_config=veg.example_gen_pb2.Output(
        split_config=veg.example_gen_pb2.SplitConfig(splits=[
            veg.example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=3),
            veg.example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=1)])))
    properties = {k: v for k, v in component.exec_properties.items() if v is not None}
    for key in ("input_config", "output_config", "custom_config"):  # as the launcher passes them: JSON
        if not isinstance(properties[key], str):
            properties[key] = veg.proto_utils.proto_to_json(properties[key])
    executor = veg.Executor(veg.Executor.Context(tmp_dir=str(tmp_path / "tmp"), unique_id="1",
                                                 beam_pipeline_args=list(config.BEAM_PIPELINE_ARGS)))
    executor.Do({}, {"examples": [examples]}, properties)
    return examples


def test_the_example_gen_reads_the_newest_spans_and_accounts_for_each(tmp_path):
    """Span folders (span-N) under the branch's folder, at any depth, and loose files as the
    oldest span: a window of 2 reads the two newest, names the ones it left out, counts rows
    per span, and the artifact's span is the newest one's number."""
    import json

    data = tmp_path / "data"
    data.mkdir()
    _write(data / "old.csv", ["emotion,pixels"] + [f"1,{PIX48}"] * 10)
    for n, rows in ((1, 10), (2, 11), (10, 12)):
        (data / "emotion" / f"span-{n}").mkdir(parents=True)
        bad = ["x," + PIX48] if n == 2 else []
        _write(data / "emotion" / f"span-{n}" / "part.csv", ["emotion,pixels"] + [f"2,{PIX48}"] * rows + bad)
    examples = _run_example_gen(tmp_path, "emotion", data, span_window=2)
    spans = json.loads(examples.get_string_custom_property("spans"))
    assert [(s["name"], s["rows_read"], s["rows_rejected"]) for s in spans] == [("span-2", 12, 1), ("span-10", 12, 0)]
    assert json.loads(examples.get_string_custom_property("spans_left_out")) == ["(no span folder)", "span-1"]
    assert examples.get_int_custom_property("rows_read") == 24 and examples.span == 10

    (data / "2026-12-01").mkdir()
    _write(data / "2026-12-01" / "more.csv", ["emotion,pixels"] + [f"3,{PIX48}"] * 10)
    with pytest.raises(csv_rows.InputDataError, match="numbered span folders .* and dated ones"):
        _run_example_gen(tmp_path / "again", "emotion", data)


def test_the_example_gen_checks_every_row_and_keeps_the_rejected_ones_with_its_examples(tmp_path):
    """The ExampleGen executor of a branch, run as TFX runs it: it reads its own format (in
    sub-folders too), leaves the other format's files to the other branch and names them,
    writes tf.Examples of the good rows only, and records counts, reasons and the rejected
    rows on and in its Examples artifact."""
    import json

    import tensorflow as tf

    data = tmp_path / "data"
    (data / "2026-12-01").mkdir(parents=True)
    good = _write(data / "a.csv", ["emotion,pixels"] + [f"{i % 5},{PIX48}" for i in range(20)])
    later = _write(data / "2026-12-01" / "b.csv.gz", ["emotion,pixels", f"1,{PIX48}", "8x," + PIX48], gz=True)
    other = _write(data / "kp.csv", [KP_HEADER, _kp_line()])
    examples = _run_example_gen(tmp_path, "emotion", data)

    assert examples.get_int_custom_property("rows_read") == 22
    assert examples.get_int_custom_property("rows_rejected") == 1
    assert json.loads(examples.get_string_custom_property("sources")) == [str(good), str(later)]  # oldest span first
    assert json.loads(examples.get_string_custom_property("other_files")) == [str(other)]
    assert json.loads(examples.get_string_custom_property("rejected_reasons")) == {"emotion": 1}
    with open(tmp_path / "examples" / spec.REJECTED_ROWS_FILE, newline="") as f:
        rejected = list(csv.DictReader(f))
    assert [(r["file"], r["line"]) for r in rejected] == [(str(later), "3")]
    records = [tf.train.Example.FromString(r.numpy()) for split in ("train", "eval")
               for r in tf.data.TFRecordDataset(sorted(map(str, (tmp_path / "examples" / f"Split-{split}").glob("*"))),
                                                compression_type="GZIP")]
    assert len(records) == 21
    assert {tuple(r.features.feature["emotion"].int64_list.value) for r in records} == {(0,), (1,), (2,), (3,), (4,)}


def test_find_csvs_groups_by_header_including_dated_folders(tmp_path):
    _write(tmp_path / "a.csv", ["emotion,pixels", f"1,{PIX48}"])
    (tmp_path / "2026-11-24").mkdir()
    _write(tmp_path / "2026-11-24" / "k.csv.gz", [KP_HEADER, _kp_line()], gz=True)
    (tmp_path / "notes.txt").write_text("ignored")
    found = readers.find_csvs(tmp_path)
    assert found["emotion"] == [tmp_path / "a.csv"]
    assert found["keypoints"] == [tmp_path / "2026-11-24" / "k.csv.gz"]


# --- broken files: every line accounted for, one-line errors (issue 16) -----------------

def _emotion_lines(n):
    return ["emotion,pixels"] + [f"{i % 5},{PIX48}" for i in range(n)]


def test_a_stray_quote_costs_one_row_not_the_rows_after_it(tmp_path):
    lines = _emotion_lines(12)
    lines[5] = '"3,' + PIX48  # unterminated quote on data line 5 (file line 6)
    lines[8] = '1,"' + PIX48 + '"x'  # text after a closing quote
    result = _stage("emotion", [_write(tmp_path / "q.csv", lines)], tmp_path)
    assert (result.rows_read, result.rows_staged, result.rows_rejected) == (12, 10, 2)
    with open(result.rejected_path, newline="") as f:
        rejected = list(csv.DictReader(f))
    assert [r["line"] for r in rejected] == ["6", "9"]
    assert all(r["reason"].startswith("unparseable CSV") for r in rejected)


def test_empty_and_comma_only_lines_are_counted_rows(tmp_path):
    lines = _emotion_lines(11)
    lines[3:3] = ["", ",", " , "]
    result = _stage("emotion", [_write(tmp_path / "blank.csv", lines)], tmp_path)
    assert (result.rows_read, result.rows_staged, result.rows_rejected) == (14, 11, 3)
    assert result.reasons == {"empty line": 1, "empty row": 2}


def test_rows_read_are_the_lines_of_the_file_minus_the_header(tmp_path):
    """The issue's probe: 260 data lines with a stray quote and bad rows in between."""
    lines = _emotion_lines(260)
    for i in range(3, 260, 29):
        lines[i] = lines[i].replace(",", ',"', 1)  # an opened, never closed quote
    path = _write(tmp_path / "many.csv", lines)
    physical = path.read_bytes().count(b"\n")
    result = _stage("emotion", [path], tmp_path)
    assert result.rows_read == physical - 1 == 260
    assert result.rows_staged + result.rows_rejected == 260 and result.rows_rejected == 9


def test_a_utf8_bom_is_accepted(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(_emotion_lines(12)).encode() + b"\n")
    assert csv_rows.detect_kind(path) == "emotion"
    assert _stage("emotion", [path], tmp_path).rows_staged == 12


def test_a_latin1_byte_is_one_rejected_row_naming_line_and_column(tmp_path):
    path = tmp_path / "latin1.csv"
    lines = [line.encode() for line in _emotion_lines(12)]
    lines[4] = b"2,\xe9" + lines[4][2:]
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = _stage("emotion", [path], tmp_path)
    assert (result.rows_read, result.rows_rejected) == (12, 1)
    with open(result.rejected_path, newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["line"] == "5" and row["reason"] == "not UTF-8 text: byte 0xe9 at column 3"
    assert row["record"].startswith("2,\\xe9"), "the raw bytes are kept, escaped"


def test_binary_not_gzip_and_truncated_gzip_files_are_one_line_errors(tmp_path):
    binary = tmp_path / "photo.csv"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(csv_rows.InputDataError, match=r"photo.csv: line 1 \(the header\): not UTF-8 text.*CSV\?"):
        csv_rows.detect_kind(binary)
    with pytest.raises(csv_rows.InputDataError, match="photo.csv: line 1"):
        _stage("emotion", [binary], tmp_path)
    not_gzip = _write(tmp_path / "plain.csv.gz", _emotion_lines(12))  # plain text named .gz
    with pytest.raises(csv_rows.InputDataError, match=r"plain.csv.gz: not gzip data .* at its start"):
        csv_rows.detect_kind(not_gzip)
    whole = _write(tmp_path / "whole.csv.gz", _emotion_lines(300), gz=True).read_bytes()
    truncated = tmp_path / "cut.csv.gz"
    truncated.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(csv_rows.InputDataError, match=r"cut.csv.gz: gzip data ends early .* after line \d+$"):
        _stage("emotion", [truncated], tmp_path)


def test_an_overlong_line_is_one_rejected_row_read_in_bounded_parts(tmp_path, monkeypatch):
    monkeypatch.setattr(csv_rows, "MAX_LINE_BYTES", 10_000)
    lines = _emotion_lines(12)
    lines[2] = "1," + "7 " * 20_000  # 40 kB on one line
    result = _stage("emotion", [_write(tmp_path / "long.csv", lines)], tmp_path)
    assert (result.rows_read, result.rows_rejected) == (12, 1)
    assert result.reasons == {"line longer than 10000 bytes (a row of these datasets is under 40 kB)": 1}


def test_cli_run_and_evaluate_print_one_line_errors_for_broken_files(tmp_path):
    """No traceback, no bare 'Aborted!': the CLI names the file and what is wrong."""
    from click.testing import CliRunner

    from emotion_ai.pipelines import cli

    whole = _write(tmp_path / "whole.csv.gz", _emotion_lines(300), gz=True).read_bytes()
    (tmp_path / "cut.csv.gz").write_bytes(whole[:len(whole) // 2])
    header_only = _write(tmp_path / "header.csv", ["emotion,pixels"])
    (tmp_path / "repo").mkdir()
    runner = CliRunner()
    for args, expected in [
        (["evaluate", "--model-repo", str(tmp_path / "repo"), "--emotion-csv", str(tmp_path / "cut.csv.gz")],
         "cut.csv.gz: gzip data ends early"),
        (["evaluate", "--model-repo", str(tmp_path / "repo"), "--emotion-csv", str(header_only)],
         "header.csv: no emotion row to score (0 rejected)"),
    ]:
        result = runner.invoke(cli.main, args)
        assert result.exit_code == 1, result.output
        assert f"Error: {tmp_path}" in result.output and expected in result.output
        assert "Traceback" not in result.output and "Aborted" not in result.output


def test_the_staged_examples_carry_numbers_that_describe_each_image(tmp_path):
    """Brightness, contrast, sharpness (and for key points the labelled face's size and
    place) are computed once per row, for StatisticsGen and the schema; a blurred, darker
    copy of an image has lower numbers."""
    rng = np.random.default_rng(0)
    sharp = rng.integers(60, 200, size=(48, 48)).astype(float)
    blurred = (sharp + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1) + np.roll(sharp, (1, 1), (0, 1))) / 4 * 0.5
    flat = np.full((48, 48), 77.0)
    rows = [f"1,{' '.join(str(int(v)) for v in image.ravel())}" for image in (sharp, blurred, flat)]
    lines = ["emotion,pixels"] + rows * 4
    result = _stage("emotion", [_write(tmp_path / "e.csv", lines)], tmp_path)
    with open(result.staged_path, newline="") as f:
        staged = list(csv.DictReader(f))
    stats = [{k: float(row[k]) for k in spec.IMAGE_STATISTICS} for row in staged]
    brightness, contrast, sharpness = spec.IMAGE_STATISTICS
    assert stats[1][brightness] < 0.6 * stats[0][brightness] and stats[1][contrast] < 0.6 * stats[0][contrast]
    assert stats[1][sharpness] < 0.3 * stats[0][sharpness]
    assert stats[2] == {brightness: 77.0, contrast: 0.0, sharpness: 0.0}

    coords = ["30", "40", "66", "40"] + ["48"] * 26  # eye centres 36 px apart at y 40
    unlabelled_eye = ["", "", "66", "40"] + ["48"] * 26
    kp = [KP_HEADER] + [_kp_line(coords), _kp_line(unlabelled_eye)] * 5  # 10 rows: the least a run takes
    result = _stage("keypoints", [_write(tmp_path / "k.csv", kp)], tmp_path)
    with open(result.staged_path, newline="") as f:
        staged = list(csv.DictReader(f))
    eyes, centre_x, centre_y = spec.FACE_FRAMING
    assert float(staged[0][eyes]) == 36.0
    assert float(staged[0][centre_x]) == 48.0
    assert float(staged[0][centre_y]) == pytest.approx((40 * 2 + 48 * 13) / 15, abs=1e-4)
    assert float(staged[1][eyes]) == spec.MISSING_COORDINATE  # an eye centre is unlabelled
    assert float(staged[1][centre_x]) == pytest.approx((66 + 48 * 13) / 14, abs=1e-4)  # the mean of the labelled points
