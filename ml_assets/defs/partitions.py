import dagster as dg

# The replayed feed covers 2013; the end is exclusive. A live feed would drop ``end_date``.
daily_partitions = dg.DailyPartitionsDefinition(start_date="2013-01-01", end_date="2014-01-01")

