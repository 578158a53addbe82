"""Which bundle answers: the champion of the newest champion state (followed), or one pinned bundle; and the
shadow challenger.

The manager holds two immutable ``Served`` values (bundle + onnxruntime session + the spec its features were
built with). A poll (``refresh``, every ``poll_seconds`` in a background thread) reads the newest champion state
under the root; when it names another line/version (a promotion or a rollback) the new bundle is loaded and
verified (MANIFEST) OFF the request path, then published by one reference assignment under a lock. A request
reads ``manager.champion`` once and keeps that value to the end, so in-flight requests finish on the old model.
A bundle that fails verification is refused: the old one keeps serving and ``warnings`` (shown by /health)
says why.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from upath import UPath

from ml_assets.core.bundle import Bundle, BundleIntegrityError, bundle_path, load_bundle
from ml_assets.core.spec import DatasetSpec

log = logging.getLogger("ml_assets.serving")
CHAMPION_ASSET = "champion"
BUNDLE_ASSET = "deployment_bundle"


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _records(root: UPath, dataset: str, asset: str) -> list[tuple[str, UPath]]:
    """(day, path) of every stored JSON day of an asset, newest first."""
    folder = root / "assets" / dataset / asset
    try:
        entries = [p for p in folder.iterdir() if p.name.endswith(".json") and not p.name.startswith(".")]
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(((p.name[:-5], p) for p in entries), key=lambda e: e[0], reverse=True)


def _value(path: UPath) -> dict[str, Any] | None:
    """A JSON day record's value; None when refused or unreadable."""
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s): skipped", path, exc)
        return None
    value = record.get("value") if isinstance(record, dict) else None
    return value if isinstance(value, dict) else None


def newest_champion(root: UPath, dataset: str) -> tuple[str | None, dict[str, Any] | None]:
    """(day, state) of the newest champion state stored under the root (refused days skipped): what
    ``ml-assets status`` shows (``cli.newest_champion``), without a Dagster instance."""
    for day, path in _records(root, dataset, CHAMPION_ASSET):
        state = _value(path)
        if state is not None:
            return day, state
    return None, None


def newest_challenger(root: UPath, dataset: str, champion: tuple[str, str] | None
                      ) -> tuple[str | None, dict[str, Any] | None]:
    """(day, pointer) of the newest ``deployment_bundle`` day whose bundle is not the current champion."""
    for day, path in _records(root, dataset, BUNDLE_ASSET):
        pointer = _value(path)
        if pointer is None or "model_line" not in pointer or "version" not in pointer:
            continue
        if (pointer["model_line"], pointer["version"]) != champion:
            return day, pointer
    return None, None


@dataclass(frozen=True)
class Served:
    """One loaded, verified bundle and everything a request needs from it."""

    bundle: Bundle = field(repr=False)
    session: Any = field(repr=False)
    spec: DatasetSpec = field(repr=False)  # the spec the bundle's features were built with (its dataset.json)
    line: str
    version: str
    path: str
    role: str                      # champion (followed), pinned, challenger
    loaded_at: str                 # when this server started answering with it (UTC)
    state_day: str | None = None   # the champion state / bundle day that named it
    since: str | None = None       # the champion state's ``since`` (the decision that made it champion)

    @property
    def key(self) -> tuple[str, str]:
        return self.line, self.version

    @property
    def model_version(self) -> str:
        return f"{self.line}/{self.version}"

    def describe(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "line": self.line, "version": self.version,
                "bundle": self.path, "role": self.role, "family": self.bundle.family,
                "serving_since": self.loaded_at, "state_day": self.state_day, "champion_since": self.since,
                "feature_code_version": self.bundle.features.get("feature_code_version"),
                "threshold": self.bundle.threshold}


def load_served(path: UPath | str, server_spec: DatasetSpec, *, role: str, when: dt.datetime,
                expect: tuple[str, str] | None = None, state_day: str | None = None,
                since: str | None = None) -> Served:
    """Load and verify a bundle for serving; raises ``BundleIntegrityError`` saying why it cannot serve."""
    bundle = load_bundle(path)  # MANIFEST verified; symlinks refused
    where = bundle.path
    line, version = bundle.model_line, bundle.version
    if expect is not None and (line, version) != expect:
        raise BundleIntegrityError(f"{where}: the pointer names {expect[0]} {expect[1]} but the bundle is "
                                   f"{line} {version}", path=where)
    try:
        spec = DatasetSpec.model_validate(bundle.dataset)
    except ValidationError as exc:
        raise BundleIntegrityError(f"{where}/dataset.json is not a valid dataset spec: "
                                   f"{exc.errors()[0]['msg']}", path=where, file="dataset.json") from None
    if spec.name != server_spec.name:
        raise BundleIntegrityError(f"{where} was built for dataset {spec.name!r}, this server serves "
                                   f"{server_spec.name!r}", path=where, file="dataset.json")
    ours = {n: c.dtype for n, c in server_spec.events_source.columns.items()}
    theirs = {n: c.dtype for n, c in spec.events_source.columns.items()}
    if ours != theirs or spec.serving.nested != server_spec.serving.nested:
        raise BundleIntegrityError(f"{where} expects another request (event columns or nested sources differ "
                                   "from this server's spec): restart the server with that spec",
                                   path=where, file="dataset.json")
    unknown = [n for n in bundle.input_names if n not in spec.model_inputs]
    if unknown:
        raise BundleIntegrityError(f"{where}: model inputs {unknown} are not features of its dataset spec",
                                   path=where, file="features.json")
    session = bundle.session()  # checked against features.json
    return Served(bundle=bundle, session=session, spec=spec, line=str(line), version=version, path=where,
                  role=role, loaded_at=_iso(when), state_day=state_day, since=since)


class ModelManager:
    """The champion (followed or pinned) and the challenger; ``refresh`` is one poll."""

    def __init__(self, root: UPath, spec: DatasetSpec, *, bundle: str | None = None,
                 challenger: str | None = "auto", clock: Callable[[], dt.datetime]):
        self.root, self.spec, self.clock = root, spec, clock
        self.pinned = bundle
        self.challenger_mode = challenger
        self._champion: Served | None = None
        self._challenger: Served | None = None
        self._lock = threading.Lock()
        self._warnings: dict[str, str] = {}
        self._refused: dict[str, tuple] = {}  # topic -> the target that failed (warned once per target)
        self.state_day: str | None = None
        self.polled_at: str | None = None
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ what requests read (one reference each)

    @property
    def champion(self) -> Served | None:
        return self._champion

    @property
    def challenger(self) -> Served | None:
        return self._challenger

    @property
    def warnings(self) -> list[str]:
        return list(self._warnings.values())

    def _publish(self, attr: str, served: Served | None) -> None:
        with self._lock:
            setattr(self, attr, served)
            if attr == "_champion":
                self.swaps += 1

    def _warn(self, topic: str, target: tuple, message: str) -> None:
        if self._refused.get(topic) != target:
            log.warning("%s", message)
        self._refused[topic] = target
        self._warnings[topic] = message

    def _clear(self, topic: str) -> None:
        self._warnings.pop(topic, None)
        self._refused.pop(topic, None)

    # ------------------------------------------------------------------ polling

    def refresh(self) -> bool:
        """One poll: follow the champion (unless pinned) and the challenger; True when a model changed."""
        changed = self._refresh_champion()
        changed = self._refresh_challenger() or changed
        self.polled_at = _iso(self.clock())
        return changed

    def _load(self, topic: str, path: UPath | str, target: tuple, **kw) -> Served | None:
        try:
            served = load_served(path, self.spec, when=self.clock(), **kw)
        except (BundleIntegrityError, OSError, ValueError, KeyError) as exc:
            self._warn(topic, target, f"{topic} {' '.join(map(str, target))} refused, not serving it: {exc}")
            return None
        self._clear(topic)
        return served

    def _refresh_champion(self) -> bool:
        if self.pinned is not None:
            if self._champion is None:
                # a pinned bundle that cannot be verified never serves: raise (the CLI says why and exits)
                self._publish("_champion", load_served(self.pinned, self.spec, role="pinned", when=self.clock()))
                return True
            return False
        day, state = newest_champion(self.root, self.spec.name)
        self.state_day = day
        pointer = (state or {}).get("champion")
        if not pointer:
            if self._champion is None:
                self._warnings["champion"] = f"no champion yet under {self.root}: nothing to serve"
            return False
        target = (pointer["model_line"], pointer["version"])
        current = self._champion
        if current is not None and current.key == target:
            self._clear("champion")
            return False
        if self._refused.get("champion") == (*target, day):
            return False  # already refused; a new state (another day) is tried again
        try:
            path = bundle_path(self.root, *target)
        except ValueError as exc:
            self._warn("champion", (*target, day), f"champion pointer of {day} is invalid: {exc}")
            return False
        served = self._load("champion", path, (*target, day), role="champion", expect=target, state_day=day,
                            since=(state or {}).get("since"))
        if served is None:
            return False
        self._publish("_champion", served)
        log.info("now serving %s (champion state %s)%s", served.model_version, day,
                 f", was {current.model_version}" if current else "")
        return True

    def _refresh_challenger(self) -> bool:
        mode = self.challenger_mode
        if mode is None or mode == "none":
            return False
        champion = self._champion
        current = self._challenger
        if mode != "auto":
            if current is None and self._refused.get("challenger") != (mode,):
                served = self._load("challenger", mode, (mode,), role="challenger")
                if served is not None:
                    self._publish("_challenger", served)
                    return True
            return False
        day, pointer = newest_challenger(self.root, self.spec.name, champion.key if champion else None)
        if pointer is None:
            if current is not None:
                self._publish("_challenger", None)
                return True
            return False
        target = (pointer["model_line"], pointer["version"])
        if current is not None and current.key == target:
            return False
        if self._refused.get("challenger") == (*target, day):
            return False
        try:
            path = bundle_path(self.root, *target)
        except ValueError as exc:
            self._warn("challenger", (*target, day), f"challenger pointer of {day} is invalid: {exc}")
            return False
        served = self._load("challenger", path, (*target, day), role="challenger", expect=target, state_day=day)
        if served is None:
            return False
        self._publish("_challenger", served)
        log.info("shadow challenger %s (bundle of %s)", served.model_version, day)
        return True

    def start(self, poll_seconds: float) -> None:
        if self._thread is not None or poll_seconds <= 0:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(poll_seconds):
                try:
                    self.refresh()
                except Exception as exc:  # noqa: BLE001 - the poller must survive anything; /health shows it
                    log.exception("model poll failed")
                    self._warnings["poll"] = f"polling the champion failed: {type(exc).__name__}: {exc}"[:500]
                else:
                    self._warnings.pop("poll", None)

        self._thread = threading.Thread(target=loop, name="ml-assets-model-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
