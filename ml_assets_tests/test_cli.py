"""The README's demo, reduced to two days, so it cannot silently rot."""
import shutil
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import cli

REPO = Path(__file__).resolve().parents[1]


def test_help_explains_each_command(capsys):
    for argv in (["--help"], ["land", "--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0
    assert "landing" in capsys.readouterr().out


def test_land_refuses_bad_dates(capsys):
    with pytest.raises(SystemExit):
        cli.main(["land", "--start", "2013-01-05", "--end", "2013-01-01"])
    with pytest.raises(SystemExit):
        cli.main(["land", "--start", "../x", "--end", "2013-01-01"])


def test_demo_lands_and_materializes_into_the_instance(tmp_path, monkeypatch, capsys):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ML_ASSETS_HOME", str(tmp_path / "ml"))
    assert cli.main(["demo", "--days", "2"]) == 0
    out = capsys.readouterr().out
    assert "2013-01-02: run" in out and "make ui" in out
    assert "ONNX models exported for 1 day(s)" in out
    with dg.DagsterInstance.from_config(str(home)) as instance:
        record = instance.get_latest_materialization_event(dg.AssetKey("flight_features"))
        assert record is not None
        partitions = instance.get_materialized_partitions(dg.AssetKey("data_profile"))
        assert partitions == {"2013-01-01", "2013-01-02"}
        assert instance.get_materialized_partitions(dg.AssetKey("onnx_model")) == {"2013-01-02"}
    assert (tmp_path / "ml" / "assets" / "flight_features" / "2013-01-02.parquet").exists()
    assert (tmp_path / "ml" / "models" / "onnx_model" / "2013-01-02" / "model.onnx").exists()
