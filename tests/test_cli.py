"""The ``emotion-ai`` command line: clear one-line errors for unusable inputs."""
from __future__ import annotations

from click.testing import CliRunner

from pipelines.cli import main


def test_run_with_a_missing_file_names_the_file(tmp_path):
    result = CliRunner().invoke(main, ["run", "--profile", "smoke", "--keypoints-csv", str(tmp_path / "kp.csv"),
                                       "--emotion-csv", str(tmp_path / "em.csv"),
                                       "--pipeline-root", str(tmp_path / "root"), "--model-repo", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert f"Error: {tmp_path / 'kp.csv'}: file not found" in result.output
    assert "Traceback" not in result.output


def test_generate_data_writes_both_formats(tmp_path):
    result = CliRunner().invoke(main, ["generate-data", "--out", str(tmp_path), "--keypoint-rows", "3",
                                       "--emotion-rows", "4"])
    assert result.exit_code == 0, result.output
    assert len((tmp_path / "keypoints.csv").read_text().splitlines()) == 4
    assert len((tmp_path / "emotion.csv").read_text().splitlines()) == 5
