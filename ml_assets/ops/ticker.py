"""The daemon's work, done in this process: tick the landing sensor and the automation conditions, execute what
they request, repeat until nothing is requested (``ml-assets catchup``, ``ml-assets demo`` and tests).

What decides is the project's own machinery: the landing sensor (its real evaluation, cursor included) and the
automation conditions (``dg.evaluate_automation_conditions``, the evaluator the automation sensor runs, cursor
carried from tick to tick). What differs from ``dagster dev``: requests are executed here with
``execute_in_process`` (no process per run or step; on two cores that start-up would dominate), one after the
other, and the ticks are not recorded as sensor ticks. Runs carry the tags the daemon puts on its own
(``dagster/sensor_name``, ``dagster/from_automation_condition``), so the UI attributes them to the sensor, and
the owner tags that let a later process fail them if this one dies (``ops.recovery``).

Run plan for one tick: the days requested, oldest first (windows only look back, so a day never needs a later
one); consecutive days that request the same assets become one range run (the assets' single-run policy: one
step per asset over the range, days in order); an unpartitioned asset (reference data) runs first.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import dagster as dg

from ml_assets.defs.automation.sensors import SENSOR_TAG
from ml_assets.ops.recovery import owner_tags

# Each run's events go to the instance (the UI); the ticker prints one line per run.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class Executed:
    trigger: str
    first: str | None
    last: str | None
    assets: list[str]
    run_id: str
    success: bool
    seconds: float

    @property
    def days(self) -> str:
        return "-" if self.first is None else self.first if self.first == self.last else f"{self.first}..{self.last}"


@dataclass
class Planned:
    first: str | None
    last: str | None
    assets: set[dg.AssetKey] = field(default_factory=set)


def plan_runs(requested: dict[dg.AssetKey, set[str | None]]) -> list[Planned]:
    """One tick's requests as runs (see the module docstring)."""
    runs = [Planned(None, None, {k for k, parts in requested.items() if None in parts})]
    by_day: dict[str, frozenset] = {}
    for key, parts in requested.items():
        for day in parts - {None}:
            by_day[day] = by_day.get(day, frozenset()) | {key}
    for day in sorted(by_day):
        previous = runs[-1]
        if previous.last is not None and previous.assets == by_day[day] and _next_day(previous.last) == day:
            previous.last = day
        else:
            runs.append(Planned(day, day, set(by_day[day])))
    return [r for r in runs if r.assets]


def _next_day(day: str) -> str:
    import datetime as dt

    return (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()


class LocalTicker:
    """Ticks on an instance; the automation cursor is kept in the instance folder (``state_file``), as the daemon
    keeps its own, so that a later ``catchup`` continues where this one stopped. Automation's first evaluation on a
    fresh cursor is its baseline (Dagster resets every trigger on it): it happens before anything is reported."""

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance, storage, bp, log: Callable[[str], None] = print,
                 state_file: str | None = None):
        self.defs, self.instance, self.storage, self.bp, self.log = defs, instance, storage, bp, log
        sensors = {s.name: s for s in defs.sensors}
        self.landing_sensor = sensors[f"{bp.spec.name}_landing_sensor"]
        self.automation_name = f"{bp.spec.name}_automation"
        self.job = defs.resolve_implicit_global_asset_job_def()
        self.state_file = state_file
        self.landing_cursor: str | None = None
        self.automation_cursor = self._load()
        self.executed: list[Executed] = []
        self.deciding_seconds = 0.0  # time spent in sensor and automation evaluations

    def _load(self):
        import os

        from dagster_shared.serdes import deserialize_value

        if self.state_file and os.path.exists(self.state_file):
            with open(self.state_file) as fh:
                return deserialize_value(fh.read())
        return None

    def _save(self) -> None:
        from dagster_shared.serdes import serialize_value

        from ml_assets.core.storage import atomic_write_bytes, make_path

        if self.state_file and self.automation_cursor is not None:
            atomic_write_bytes(make_path(self.state_file), serialize_value(self.automation_cursor).encode())

    def _execute(self, run: Planned) -> Executed:
        started = time.time()
        tags = {SENSOR_TAG: "automation", "dagster/sensor_name": self.automation_name,
                "dagster/from_automation_condition": "true", **owner_tags()}
        kwargs: dict = {}
        if run.first is not None and run.first == run.last:
            kwargs["partition_key"] = run.first
        elif run.first is not None:
            tags.update({"dagster/asset_partition_range_start": run.first,
                         "dagster/asset_partition_range_end": run.last})
        result = self.job.get_subset(asset_selection=set(run.assets)).execute_in_process(
            instance=self.instance, run_config=QUIET, tags=tags, raise_on_error=False, **kwargs)
        done = Executed("automation", run.first, run.last, sorted(k.to_user_string() for k in run.assets),
                        result.run_id, result.success, time.time() - started)
        self.executed.append(done)
        self.log(f"  {done.seconds:5.1f} s  {done.days:22} {', '.join(a.split('/')[-1] for a in done.assets)}"
                 f"{'' if done.success else '  -> FAILED (see the run in the UI)'}")
        return done

    def retry(self, run_ids: list[str]) -> list[Executed]:
        """Execute again, once, the runs a dead process left behind (``ops.recovery`` marked them failed): they
        failed because their process vanished, not because of their code, and automation does not retry a failed
        day by itself (that would loop on a real failure)."""
        out = []
        for run_id in run_ids:
            run = self.instance.get_run_by_id(run_id)
            planned = {r.event_log_entry.dagster_event.asset_key for r in self.instance.get_records_for_run(
                run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED, limit=10_000).records}
            if run is None or not planned:
                continue
            tags = run.tags
            first = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_start")
            last = tags.get("dagster/partition") or tags.get("dagster/asset_partition_range_end")
            self.log(f"  retrying run {run_id[:8]} ({first or '-'}..{last or '-'}), left behind by a dead process")
            out.append(self._execute(Planned(first, last, planned)))
        return out

    def tick_landing(self) -> int:
        """Report the new deliveries, as the landing sensor does under the daemon; returns how many."""
        started = time.time()
        context = dg.build_sensor_context(instance=self.instance, cursor=self.landing_cursor, definitions=self.defs,
                                          resources={"storage": self.storage})
        data = self.landing_sensor.evaluate_tick(context)
        self.landing_cursor = data.cursor
        for event in data.asset_events:
            self.instance.report_runless_asset_event(event)
        self.deciding_seconds += time.time() - started
        return len(data.asset_events)

    def tick_automation(self) -> list[Executed]:
        started = time.time()
        result = dg.evaluate_automation_conditions(self.defs, self.instance, cursor=self.automation_cursor)
        self.automation_cursor = result.cursor
        requested = {r.key: set(result.get_requested_partitions(r.key)) for r in result.results
                     if isinstance(r.key, dg.AssetKey) and r.true_subset.size}
        self.deciding_seconds += time.time() - started
        return [self._execute(run) for run in plan_runs(requested)]

    def _baseline(self) -> None:
        if self.automation_cursor is None:
            self.tick_automation()  # the baseline, before this process reports anything
            self._save()

    def step(self) -> list[Executed]:
        """One landing tick and one automation tick, with what they request executed. What that work makes ready
        in turn (rarely anything: a tick already requests the downstream of what it requests) waits for the next
        step or ``settle``, as it waits for the daemon's next tick."""
        self._baseline()
        try:
            self.tick_landing()
            return self.tick_automation()
        finally:
            self._save()

    def settle(self, max_rounds: int = 400) -> bool:
        """Tick until a round requests nothing. False if it had not settled after ``max_rounds``.

        The cursor is saved after the baseline and when the round ends or stops, not at every tick (serializing it
        is ~60 ms): a process that dies mid-round leaves an older cursor, from which the next one sees at most more
        changes than happened since, never fewer (at worst it recomputes a day to the same value)."""
        self._baseline()
        try:
            for _ in range(max_rounds):
                landed = self.tick_landing()
                if not self.tick_automation() and not landed:
                    return True
            return False
        finally:
            self._save()
