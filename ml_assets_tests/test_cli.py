"""The README's commands, reduced to a few days, so they cannot silently rot."""
import shutil
from pathlib import Path

import dagster as dg
import pytest

from ml_assets import cli

REPO = Path(__file__).resolve().parents[1]


def test_help_explains_each_command(capsys):
    for argv in (["--help"], ["land", "--help"], ["demo", "--help"], ["backfill", "--help"]):
        with pytest.raises(SystemExit) as exit_:
            cli.main(argv)
        assert exit_.value.code == 0
    assert "landing" in capsys.readouterr().out


def test_land_refuses_bad_dates(capsys):
    with pytest.raises(SystemExit):
        cli.main(["land", "--start", "2013-01-05", "--end", "2013-01-01"])
    with pytest.raises(SystemExit):
        cli.main(["land", "--start", "../x", "--end", "2013-01-01"])


@pytest.fixture
def instance_home(tmp_path, monkeypatch):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("ML_ASSETS_HOME", str(tmp_path / "ml"))
    return home


def test_demo_lets_the_sensors_and_automation_carry_the_days_through(instance_home, tmp_path, capsys):
    assert cli.main(["demo", "--days", "2"]) == 0
    out = capsys.readouterr().out
    assert "2013-01-02 landed" in out and "make ui" in out
    assert "days processed  2 of 2" in out and "freshness       ok" in out
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        triggers = {r.tags.get("ml_assets/trigger") for r in instance.get_runs()}
        assert triggers == {"landing_sensor", "automation"}  # no hand-written run
        assert instance.get_materialized_partitions(dg.AssetKey("data_profile")) == {"2013-01-01", "2013-01-02"}
        assert instance.get_materialized_partitions(dg.AssetKey("onnx_model")) == {"2013-01-02"}
        # the first day has no history: tomorrow's model is trained as soon as a day has landed
        assert instance.get_materialized_partitions(dg.AssetKey("training_set")) == {"2013-01-02", "2013-01-03"}
        assert instance.get_latest_materialization_event(dg.AssetKey("champion")) is not None
    assert (tmp_path / "ml" / "assets" / "flight_features" / "2013-01-02.parquet").exists()
    assert (tmp_path / "ml" / "models" / "onnx_model" / "2013-01-02" / "model.onnx").exists()


def test_backfill_registers_the_range_and_runs_the_data_layer_as_one_run(instance_home, capsys):
    assert cli.main(["land", "--start", "2013-01-01", "--end", "2013-01-05"]) == 0
    assert cli.main(["backfill", "--start", "2013-01-01", "--end", "2013-01-05", "--wait"]) == 0
    assert "COMPLETED_SUCCESS" in capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        (backfill,) = instance.get_backfills()
        assert backfill.title == "ml-assets backfill data 2013-01-01..2013-01-05"
        target = backfill.asset_backfill_data.target_subset.partitions_subsets_by_asset_key
        assert set(target) == {dg.AssetKey(k) for k in ("raw_flights", "raw_weather", "flight_features",
                                                         "data_profile")}
        days = [f"2013-01-0{d}" for d in range(1, 6)]
        assert all(sorted(subset.get_partition_keys()) == days for subset in target.values())
        (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/backfill": backfill.backfill_id}))
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert (run.tags["dagster/asset_partition_range_start"], run.tags["dagster/asset_partition_range_end"]) \
            == ("2013-01-01", "2013-01-05")
        assert instance.get_materialized_partitions(dg.AssetKey("data_profile")) == set(days)


def test_backfill_without_wait_leaves_it_to_the_daemon_and_refuses_unlanded_days(instance_home, capsys):
    assert cli.main(["land", "--start", "2013-01-01", "--end", "2013-01-02"]) == 0
    assert cli.main(["backfill", "--start", "2013-01-01", "--end", "2013-01-03"]) == 2
    assert "2013-01-03" in capsys.readouterr().err
    assert cli.main(["backfill", "--start", "2013-01-01", "--end", "2013-01-02", "--assets", "all"]) == 0
    assert "dagster-daemon run" in capsys.readouterr().out
    with dg.DagsterInstance.from_config(str(instance_home)) as instance:
        (backfill,) = instance.get_backfills()
        assert backfill.status.value == "REQUESTED"
        target = backfill.asset_backfill_data.target_subset.partitions_subsets_by_asset_key
        assert sorted(target[dg.AssetKey("raw_flights")].get_partition_keys()) == ["2013-01-01", "2013-01-02"]
        # nothing learns from before the first day
        assert sorted(target[dg.AssetKey("training_set")].get_partition_keys()) == ["2013-01-02"]
