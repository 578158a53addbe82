import warnings

import dagster as dg

# The replayed feed covers 2013; the end is exclusive. A live feed would drop ``end_date``.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")


def daily_check_spec(name: str, *, asset: str, **kwargs) -> dg.AssetCheckSpec:
    """A check of a daily asset, judged per day.

    Partitioned checks are a Dagster preview (1.13) and we use them on purpose: with an unpartitioned check
    a daily asset has one check status (its newest evaluation), so automation would let a day whose blocking
    check failed through as soon as a later day passed. Per-day status is also what the UI and the alerts show.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, partitions_def=daily_partitions, **kwargs)
