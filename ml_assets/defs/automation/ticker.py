"""The daemon's work, done in this process: tick the landing sensor and the automation conditions, execute
what they request, repeat until nothing is requested (``ml-assets demo`` and tests).

What decides is the project's own machinery: ``landing_sensor`` (its real evaluation, cursor included) and
the automation conditions (``dg.evaluate_automation_conditions``, the evaluator the automation sensor runs,
cursor carried from tick to tick). What differs from ``dagster dev``: requests are executed here with
``execute_in_process`` (no process per run or step; on two cores that start-up would dominate), one after the
other, and the ticks are not recorded as sensor ticks. Runs and materializations land in the instance as
usual, tagged ``ml_assets/trigger`` = ``landing_sensor`` or ``automation``.

Run order: the daemon would group a tick's requests by partition; here every requested day runs oldest first
(a day's upstream is the same or earlier days: windows look back), an unpartitioned asset (the champion) runs
after the days it reads, and what depends on it after that.
"""
from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from ml_assets.defs.automation.sensors import SENSOR_TAG, landing_sensor
from ml_assets.resources.storage import StorageRoot

# Each run's events go to the instance (the UI); the ticker prints one line per run, with why it stopped.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class Executed:
    trigger: str
    partition: str | None
    assets: list[str]
    checks: list[str]
    run_id: str
    success: bool
    seconds: float
    stopped_by: list[str] = field(default_factory=list)  # failed blocking checks (a refusal, not an error)

    @property
    def outcome(self) -> str:
        if self.success:
            return "ok"
        return f"stopped by {', '.join(self.stopped_by)}" if self.stopped_by else "FAILED"


@dataclass
class Planned:
    partition: str | None
    assets: set[dg.AssetKey] = field(default_factory=set)
    checks: set[dg.AssetCheckKey] = field(default_factory=set)


def plan_runs(graph, assets: dict[dg.AssetKey, set[str | None]], checks: set[dg.AssetCheckKey]) -> list[Planned]:
    """Order one tick's requests as runs (see the module docstring)."""
    unpartitioned = {k for k, parts in assets.items() if None in parts}
    after = (dg.AssetSelection.assets(*unpartitioned).downstream().resolve(graph) - unpartitioned
             if unpartitioned else set())
    before_days: dict[str, set] = defaultdict(set)
    after_days: dict[str, set] = defaultdict(set)
    for key, parts in assets.items():
        for partition in parts - {None}:
            (after_days if key in after else before_days)[partition].add(key)
    runs = [Planned(p, before_days[p]) for p in sorted(before_days)]
    if unpartitioned:
        runs.append(Planned(None, unpartitioned))
    runs += [Planned(p, after_days[p]) for p in sorted(after_days)]
    covered = {key for run in runs for key in run.assets}
    alone = {c for c in checks if c.asset_key not in covered}  # checks of requested assets ride along
    if alone:
        runs.append(Planned(None, set(), alone))
    return runs


class LocalTicker:
    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, storage: StorageRoot,
                 log: Callable[[str], None] = print):
        self.defs, self.instance, self.storage, self.log = defs, instance, storage, log
        self.graph = defs.resolve_asset_graph()
        self.job = defs.resolve_implicit_global_asset_job_def()
        self.landing_cursor: str | None = None
        self.automation_cursor = None
        self.executed: list[Executed] = []
        self.deciding_seconds = 0.0  # time spent in sensor and automation evaluations

    def _execute(self, trigger: str, partition: str | None, assets: set[dg.AssetKey],
                 checks: set[dg.AssetCheckKey] | None = None) -> Executed:
        started = time.time()
        job = self.job.get_subset(asset_selection=set(assets), asset_check_selection=checks or None)
        result = job.execute_in_process(instance=self.instance, partition_key=partition, run_config=QUIET,
                                        tags={SENSOR_TAG: trigger}, raise_on_error=False)
        stopped_by = sorted(e.asset_check_key.to_user_string() for e in result.get_asset_check_evaluations()
                            if not e.passed and e.blocking and e.severity == dg.AssetCheckSeverity.ERROR)
        done = Executed(trigger, partition, sorted(k.to_user_string() for k in assets),
                        sorted(c.to_user_string() for c in checks or ()), result.run_id, result.success,
                        time.time() - started, stopped_by)
        self.executed.append(done)
        self.log(f"  {done.seconds:5.1f} s  {trigger:14} {partition or '-':10} {', '.join(done.assets + done.checks)}"
                 f"{'' if done.success else '  -> ' + done.outcome}")
        return done

    def tick_landing(self) -> list[Executed]:
        started = time.time()
        context = dg.build_sensor_context(instance=self.instance, cursor=self.landing_cursor,
                                          definitions=self.defs, resources={"storage": self.storage})
        data = landing_sensor.evaluate_tick(context)
        self.landing_cursor = data.cursor
        self.deciding_seconds += time.time() - started
        return [self._execute("landing_sensor", r.partition_key, set(r.asset_selection or ()))
                for r in data.run_requests]

    def tick_automation(self) -> list[Executed]:
        started = time.time()
        result = dg.evaluate_automation_conditions(self.defs, self.instance, cursor=self.automation_cursor)
        self.automation_cursor = result.cursor
        assets = {k: set(result.get_requested_partitions(k)) for k in self.graph.get_all_asset_keys()
                  if result.get_requested_partitions(k)}
        checks = {r.key for r in result.results if isinstance(r.key, dg.AssetCheckKey) and r.true_subset.size}
        self.deciding_seconds += time.time() - started
        return [self._execute("automation", run.partition, run.assets, run.checks)
                for run in plan_runs(self.graph, assets, checks)]

    def settle(self, max_rounds: int = 50) -> bool:
        """Tick until a round requests nothing. False if it had not settled after ``max_rounds``."""
        for _ in range(max_rounds):
            if not (self.tick_landing() + self.tick_automation()):
                return True
        return False

    def run_until_settled(self, max_rounds: int = 50) -> bool:
        # The automation sensor is already running when data lands: its first evaluation is the baseline.
        self.tick_automation()
        return self.settle(max_rounds)


def pipeline_summary(instance: dg.DagsterInstance, storage: StorageRoot, days: list[str]) -> tuple[bool, list[str]]:
    """(did the landed days get through to a fresh champion decision, lines for a person)."""
    from ml_assets.defs.automation.freshness import CHAMPION, considered_through, evaluate_champion_freshness

    stored = instance.get_materialized_partitions(dg.AssetKey("flight_features"))
    done = [d for d in days if d in stored]
    lines = [f"days processed  {len(done)} of {len(days)} landed ({days[0]}..{days[-1]}) have features"]
    through, about = considered_through(instance)
    champion_day = about.get("champion_data_day")
    auc = None
    if champion_day and champion_day != "none":
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("deployment_bundle"), asset_partitions=[champion_day]), limit=1).records
        entry = records[0].asset_materialization.metadata.get("holdout_auc") if records else None
        auc = entry.value if entry is not None else None
    if instance.get_latest_materialization_event(CHAMPION) is None:
        lines.append("champion        none yet")
    else:
        lines.append(f"champion        {about.get('champion')} (promoted on data day {champion_day}; holdout AUC "
                     f"{'n/a' if auc is None else f'{auc:.3f}'}); decision considered data through {through}")
    freshness = evaluate_champion_freshness(instance, storage)
    lines.append(f"freshness       {'ok' if freshness.passed else 'STALE'}: {freshness.description}")
    lines.append(_predictions_line(storage, days[-1]))
    return len(done) == len(days) and freshness.passed, lines


def _predictions_line(storage, day: str) -> str:
    from ml_assets.core.storage import read_parquet

    path = storage.path() / "assets" / "batch_predictions" / f"{day}.parquet"
    if not path.exists():
        return f"predictions     none stored for {day}"
    frame = read_parquet(path)
    by = ", ".join(sorted(set(frame["model_version"].to_list()))) or "no champion yet"
    return f"predictions     {day}: {frame.height} scheduled flights scored by {by} ({path})"
