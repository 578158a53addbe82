"""Decisions that hold up: freshness, promotions shown worse later, warning alerts, and gate firing rates, from a
kept replay, under the current rules and the old ones (commit b80552c) side by side.

    .venv/bin/python bench/backfill.py --start 2013-01-01 --end 2013-12-31 --families xgboost --keep /tmp/year
    .venv/bin/python bench/decisions.py --from /tmp/year [--start 2013-02-01] [--end 2013-12-31]

DIR holds DIR/home (ML_ASSETS_HOME) and DIR/dagster (DAGSTER_HOME) of a replay made on the user's path
(`ml-assets land` + `ml-assets backfill --assets all --wait`). Nothing is retrained: every figure comes from what
the replay stored (the champion chain, each day's holdout scores in `model_evaluation`, the bundles, the stored
candidate model files, `labelled_features`, `batch_predictions`, `data_profile`, and the instance's check
evaluations). Days run from --start (default 2013-02-01, or the replay's first day when it ends before) to --end
(default: the replay's last champion day).

1. freshness: the share of served days D (batch_predictions D stored and not refused) whose champion, the one
   decided on D-1-lag, was trained through at most ``MAX_LAG_DAYS`` day before the newest possible
   (``core.champion.freshness_lag`` on the decision day: the bundle of the decision day or the day before). Goal
   >= 90%.
2. promotions shown worse: each promotion on day P (B_new replacing B_old) with both bundles scored on the rows of
   the next 7 labelled days after P, pooled rows, one-sided DeLong at 5% (``core.stats``); also the per-day pooled
   version (the gates' own way to combine days), a t test on the 7 daily deltas (the day as the unit: the two
   pooled versions count only row noise, while two models' daily difference moves ~0.01 from day to day on
   its own), and the count worse by point estimate. Goal 0 significant.
3. warning alerts per month: the instance's failed check evaluations of the days, each mapped by the check-failure
   sensor's own function (``defs.automation.sensors.check_evaluation_to_alert``); counted as the sensor sends
   them (one per episode: a failure continuing the previous day's, ``continues_episode``, sends nothing), beside
   the failing check-days. Goal <= 2 per month. (alerts.jsonl is not read: a
   `--wait` backfill runs no sensor.)
4. the same three under the OLD rules (b80552c), walked offline over the same stored scores: sanity = holdout AUC >
   0.55 and above the baseline's AUC, no interval (the old code compares with ``>``); promotion = candidate AUC >=
   champion AUC - 0.01 on the day, and per slice of >= 100 rows AUC >= champion - (0.02 + 2 Hanley-McNeil SE);
   live_auc_drop = one day's live AUC below the champion's evaluation AUC by more than 0.05; feature_drift with a
   NaN drift counted as over (so the first day, with no reference, fires); label_balance = |share - trailing
   share| <= 0.2 (no test). The old chain uses the same timeline as today (the champion decided on D-1-lag serves
   D); a candidate the new rules refused has no bundle and is scored through its stored model files (the ONNX
   parity of every bundle is checked at 1e-5, so the scores are the same). The checks these rules do not touch
   (row_count, unique_key, contract, behavior warnings, ...) are carried over from the instance unchanged;
   champion_freshness is recomputed on the old chain with today's rule.
5. gate firing rates, normal vs degraded, on the same stored days, new and old rules side by side:
   sanity on the real holdout scores vs the same scores with the labels shuffled within the day; the promotion
   gate (against the stored champion in effect, with its stored references and track record) on the real
   candidate vs the candidate's scores with noise added so that its AUC on the day drops by 0.05; live_auc_drop
   on the real rolling series vs the same series with the AUC of its last 1, 3 or 7 days lowered by 0.05. The
   offline new-rule decisions are compared with the stored ones (agreement).

A readable table, then one JSON line with every figure, the command, the date and the load average.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from ml_assets.resources.storage import REFUSED_KEY

FRESH_GOAL = 0.90
ALERTS_GOAL = 2.0
EVIDENCE_DAYS = 7
DEGRADE_AUC = 0.05
DAYS_PER_MONTH = 365.25 / 12


# ---------------------------------------------------------------------------------------------- the old rules


OLD = {"auc_floor": 0.55, "auc_tolerance": 0.01, "slice_auc_tolerance": 0.02, "slice_noise_z": 2.0,
       "min_slice_rows": 100, "live_auc_tolerance": 0.05, "label_rate_band": 0.2}


def old_auc_standard_error(auc: float, rows: int, late_rate: float) -> float:
    """b80552c:ml_assets/core/promotion.py, as it was."""
    n_pos, n_neg = rows * late_rate, rows * (1 - late_rate)
    if math.isnan(auc) or n_pos < 1 or n_neg < 1:
        return math.nan
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (n_pos * n_neg)
    return math.sqrt(max(variance, 0.0))


def _old_not_worse(candidate: float, champion: float, tolerance: float) -> bool:
    if math.isnan(champion):
        return True
    return not math.isnan(candidate) and candidate >= champion - tolerance


def old_sanity(y: np.ndarray, p: np.ndarray, p_baseline: np.ndarray) -> bool:
    a, b = auc(y, p), auc(y, p_baseline)
    return bool(np.isfinite(a) and a > OLD["auc_floor"] and a > b)


def old_promotion(y: np.ndarray, p_candidate: np.ndarray, p_champion: np.ndarray | None,
                  slices: dict[str, np.ndarray], parity_passed: bool = True) -> bool:
    if not parity_passed:
        return False
    if p_champion is None:
        return True
    if not _old_not_worse(auc(y, p_candidate), auc(y, p_champion), OLD["auc_tolerance"]):
        return False
    for values in slices.values():
        for value in {v for v in values.tolist() if v is not None}:
            mask = values == value
            rows = int(mask.sum())
            if rows < OLD["min_slice_rows"]:
                continue
            ys = y[mask]
            rate = float(ys.mean())
            a, b = auc(ys, p_candidate[mask]), auc(ys, p_champion[mask])
            se = [old_auc_standard_error(x, rows, rate) for x in (a, b)]
            noise = math.sqrt(se[0] ** 2 + se[1] ** 2) if not any(math.isnan(s) for s in se) else 0.0
            if not _old_not_worse(a, b, OLD["slice_auc_tolerance"] + OLD["slice_noise_z"] * noise):
                return False
    return True


# ---------------------------------------------------------------------------------------------- helpers


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from ml_assets.core.evaluation import roc_auc

    if y.size == 0 or y.min() == y.max():
        return math.nan
    return float(roc_auc(y, p))


def day_add(day: str, n: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=n)).isoformat()


def day_span(start: str, end: str) -> list[str]:
    out, d = [], dt.date.fromisoformat(start)
    while d.isoformat() <= end:
        out.append(d.isoformat())
        d += dt.timedelta(days=1)
    return out


def share(k: int, n: int) -> float:
    return k / n if n else math.nan


def clean(value):
    """JSON-safe: NaN/inf -> None, numpy -> Python."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return round(v, 6) if math.isfinite(v) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def degrade(y: np.ndarray, p: np.ndarray, drop: float, rng: np.random.Generator) -> np.ndarray:
    """``p`` with gaussian noise on the logit scale, its scale found by bisection so that AUC falls by ``drop``."""
    base = auc(y, p)
    target = max(0.5, base - drop)
    logit = np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))
    scale = float(np.std(logit)) or 1.0
    noise = rng.standard_normal(p.size)
    lo, hi = 0.0, 50.0
    for _ in range(40):
        mid = (lo + hi) / 2
        if auc(y, logit + mid * scale * noise) > target:
            lo = mid
        else:
            hi = mid
    out = logit + hi * scale * noise
    return 1 / (1 + np.exp(-out))


# ---------------------------------------------------------------------------------------------- the stored replay


class Store:
    """What the replay stored, read as the IO managers wrote it (``resources/storage.py``)."""

    def __init__(self, home: Path, spec):
        from ml_assets.core.features import labelled_rows

        self.home, self.spec = home, spec
        self.assets = home / "assets" / spec.name
        self.models = home / "models" / spec.name
        self.key, self.label = list(spec.features.key), spec.label.name
        self._labelled_rows = labelled_rows
        self._cache: dict = {}

    def days(self, asset: str) -> list[str]:
        folder = self.assets / asset
        return sorted(p.name.split(".")[0] for p in folder.iterdir() if p.suffix in (".parquet", ".json")
                      and not p.name.startswith(".")) if folder.exists() else []

    def _stored(self, asset: str, day: str, suffix: str, parse) -> tuple:
        """(value or None, the refusal reason or None, stored at all), read once."""
        k = (asset, day, suffix)
        if k not in self._cache:
            path = self.assets / asset / f"{day}{suffix}"
            self._cache[k] = parse(path.read_bytes()) + (True,) if path.exists() else (None, None, False)
        return self._cache[k]

    def frame(self, asset: str, day: str) -> tuple[pl.DataFrame | None, str | None, bool]:
        """(frame or None, the refusal reason or None, stored at all). A refused day may still hold its data."""
        def parse(data: bytes) -> tuple:
            frame = pl.read_parquet(io.BytesIO(data))
            return frame if frame.width else None, pl.read_parquet_metadata(io.BytesIO(data)).get(REFUSED_KEY)
        return self._stored(asset, day, ".parquet", parse)

    def usable(self, asset: str, day: str) -> pl.DataFrame | None:
        frame, reason, _ = self.frame(asset, day)
        return None if reason else frame

    def record(self, asset: str, day: str) -> tuple[object, str | None, bool]:
        def parse(data: bytes) -> tuple:
            rec = json.loads(data)
            return rec.get("value"), rec.get("refused")
        return self._stored(asset, day, ".json", parse)

    def holdout(self, day: str) -> pl.DataFrame | None:
        """Day D's labelled rows (what model_evaluation and champion judge on), or None."""
        k = ("holdout", day)
        if k not in self._cache:
            frame = self.usable("labelled_features", day)
            rows = self._labelled_rows(frame, self.spec) if frame is not None else None
            self._cache[k] = rows if rows is not None and rows.height else None
        return self._cache[k]

    def y(self, day: str) -> np.ndarray | None:
        rows = self.holdout(day)
        return None if rows is None else rows[self.label].cast(pl.Float64).to_numpy()

    def evaluation(self, day: str) -> pl.DataFrame | None:
        """The day's holdout scores (also for a day model_sanity refused: the refused value keeps them), in the
        holdout's row order."""
        frame, _, _ = self.frame("model_evaluation", day)
        rows = self.holdout(day)
        if frame is None or rows is None:
            return None
        if frame.height != rows.height or not frame.select(self.key).equals(rows.select(self.key)):
            keyed = rows.select(self.key).with_row_index("__row")
            frame = keyed.join(frame, on=self.key, how="inner").sort("__row").drop("__row")
            if frame.height != rows.height:
                return None
        return frame

    def slices(self, day: str) -> dict[str, np.ndarray]:
        rows = self.holdout(day)
        return {s.name: rows.select(pl.sql_expr(s.expression).cast(pl.String)).to_series().to_numpy()
                for s in self.spec.slices}


class Scorer:
    """Scores a model on a day's holdout rows, cached: a bundle (ONNX, what serves) or stored model files."""

    def __init__(self, store: Store):
        self.store, self.loaded, self.scores = store, {}, {}

    @staticmethod
    def ident(ref: dict) -> tuple:
        if ref.get("kind") == "files":
            return ("files", ref["family"], ref["day"])
        return ("bundle", ref["model_line"], ref["version"])

    def _model(self, ident: tuple):
        if ident not in self.loaded:
            if ident[0] == "bundle":
                from ml_assets.core import bundle as B

                bundle = B.load_bundle(B.bundle_path(self.store.home, ident[1], ident[2]))
                session = bundle.session()
                self.loaded[ident] = lambda rows: bundle.score(rows, session)
            else:
                from ml_assets.core import families as FAM
                from ml_assets.resources.storage import read_files
                from upath import UPath

                files = read_files(UPath(str(self.store.models / f"{ident[1]}_model" / ident[2])))
                files.pop("refused.json", None)
                model = FAM.load(files)
                self.loaded[ident] = lambda rows: FAM.predict(model, rows)
        return self.loaded[ident]

    def score(self, ref: dict, day: str) -> np.ndarray | None:
        rows = self.store.holdout(day)
        if rows is None:
            return None
        k = (self.ident(ref), day)
        if k not in self.scores:
            self.scores[k] = np.asarray(self._model(self.ident(ref))(rows), dtype=np.float64)
        return self.scores[k]


def name_of(ref: dict | None) -> str:
    if ref is None:
        return "none"
    if ref.get("kind") == "files":
        return f"{ref['family']} model of {ref['day']} (no bundle)"
    return f"{ref['model_line']} {ref['version']}"


def lag_of(ref: dict | None, decided_on: str) -> int | None:
    from ml_assets.core import champion as C

    return C.freshness_lag({"champion": ref}, decided_on)


# ---------------------------------------------------------------------------------------------- the chains


def new_chain(store: Store, days: list[str]) -> dict[str, dict]:
    """The stored champion states (day -> state); a missing or refused day carries the state before."""
    from ml_assets.core import champion as C

    chain, state = {}, C.empty_state()
    for day in days:
        value, refused, stored = store.record("champion", day)
        if stored and not refused and isinstance(value, dict):
            state = value
        chain[day] = state
    return chain


def candidate_ref(store: Store, day: str, family: str) -> dict | None:
    """Day D's candidate of ``family``: its bundle when one was written, else its stored model files."""
    pointer, refused, _ = store.record("deployment_bundle", day)
    if isinstance(pointer, dict) and not refused and pointer.get("family") == family:
        return {"kind": "bundle", **pointer}
    folder = store.models / f"{family}_model" / day
    lineage = folder / "lineage.json"
    if not (folder / "manifest.json").exists() or not lineage.exists():
        return None
    span = json.loads(lineage.read_bytes()).get("date_span") or [None, None]
    return {"kind": "files", "family": family, "day": day, "trained_through": span[-1], "parity_passed": True}


def old_chain(store: Store, scorer: Scorer, days: list[str], first_model_day: str) -> tuple[dict, list[dict], dict]:
    """Walk the days with the old rules. Returns (day -> {champion, action}, promotions, per-day notes)."""
    chain, promotions, notes = {}, [], {}
    champion = None
    for day in days:
        action = "none" if champion is None else "keep"
        ev = store.evaluation(day) if day >= first_model_day else None
        if ev is not None:
            y = store.y(day)
            chosen = ev["chosen"][0]
            p = ev[f"p_{chosen}"].to_numpy()
            sane = old_sanity(y, p, ev["p_baseline"].to_numpy())
            notes[day] = {"old_sanity": sane}
            ref = candidate_ref(store, day, chosen) if sane else None
            if ref is not None:
                p_champion = scorer.score(champion, day) if champion is not None else None
                if old_promotion(y, p, p_champion, store.slices(day), bool(ref.get("parity_passed", True))):
                    if champion is None or Scorer.ident(champion) != Scorer.ident(ref):
                        promotions.append({"day": day, "new": ref, "old": champion})
                    champion, action = ref, "promote"
        chain[day] = {"champion": champion, "action": action}
    return chain, promotions, notes


# ---------------------------------------------------------------------------------------------- figures 1 and 2


def freshness(store: Store, chain: dict, days: list[str], offset: int, max_lag: int, stored_chain: bool) -> dict:
    """``stored_chain``: the chain that really made the batch predictions (their model_version is checked)."""
    served = fresh = no_champion = 0
    mismatched, lags = [], Counter()
    for day in days:
        predictions = store.usable("batch_predictions", day)
        if predictions is None:
            continue
        served += 1
        decided_on = day_add(day, offset)
        state = chain.get(decided_on)
        ref = state["champion"] if state else None
        if ref is None:
            no_champion += 1
            lags["no champion"] += 1
            continue
        lag = lag_of(ref, decided_on)
        lags[str(lag)] += 1
        fresh += lag is not None and lag <= max_lag
        if stored_chain and "model_version" in predictions.columns and predictions.height:
            used = set(predictions["model_version"].unique().to_list())
            if used != {f"{ref['model_line']}/{ref['version']}"}:
                mismatched.append(day)
    return {"served_days": served, "fresh_days": fresh, "share": share(fresh, served), "no_champion_days": no_champion,
            "lag_days": dict(sorted(lags.items())), "goal": FRESH_GOAL,
            **({"prediction_model_mismatch_days": mismatched} if mismatched else {})}


def promotions_of_new_chain(chain: dict, days: list[str]) -> list[dict]:
    out, before = [], None
    for day in days:
        state = chain[day]
        if state.get("action") == "promote" and state.get("day") == day:
            out.append({"day": day, "new": state["champion"], "old": (before or {}).get("champion")})
        before = state
    return out


def day_replicated_test(deltas: list[float]) -> float:
    """One-sided p that the new model is worse, with the day as the unit: a t test on the daily AUC deltas
    (their spread holds each day's row noise and the day effects the pooled-row tests leave out)."""
    from scipy.stats import ttest_1samp

    deltas = [d for d in deltas if not math.isnan(d)]
    if len(deltas) < 3:
        return math.nan
    return float(ttest_1samp(deltas, 0.0, alternative="less").pvalue)


def judge_promotions(store: Store, scorer: Scorer, promotions: list[dict], start: str, end: str,
                     last_day: str, alpha: float = 0.05) -> dict:
    from ml_assets.core import stats

    rows = []
    for p in promotions:
        if not start <= p["day"] <= end or p["old"] is None:
            continue
        days, d = [], p["day"]
        while len(days) < EVIDENCE_DAYS and d < last_day:
            d = day_add(d, 1)
            if store.holdout(d) is not None:
                days.append(d)
        if not days:
            rows.append({"day": p["day"], "new": name_of(p["new"]), "old": name_of(p["old"]), "days": 0})
            continue
        ys, pn, po, per_day = [], [], [], []
        for d in days:
            y, a, b = store.y(d), scorer.score(p["new"], d), scorer.score(p["old"], d)
            ys.append(y), pn.append(a), po.append(b), per_day.append((y, a, b))
        pooled = stats.paired_auc_difference(np.concatenate(ys), np.concatenate(pn), np.concatenate(po),
                                             confidence=1 - 2 * alpha)
        by_day = stats.pooled_paired_difference(per_day, confidence=1 - 2 * alpha)
        days_t = day_replicated_test([auc(y, a) - auc(y, b) for y, a, b in per_day])
        rows.append({"day": p["day"], "new": name_of(p["new"]), "old": name_of(p["old"]), "days": len(days),
                     "rows": pooled.n, "new_auc": pooled.auc_a, "old_auc": pooled.auc_b, "delta": pooled.delta,
                     "p_worse": pooled.p_value_a_worse, "significant": bool(pooled.p_value_a_worse < alpha),
                     "daywise_delta": by_day.delta, "daywise_p_worse": by_day.p_value_a_worse,
                     "daywise_significant": bool(by_day.p_value_a_worse < alpha),
                     "day_t_p_worse": days_t, "day_t_significant": bool(days_t < alpha)})
    judged = [r for r in rows if r["days"]]
    # Over ~50 promotions a 5% test flags ~2.5 equal pairs by chance; Holm over them controls that.
    holm = stats.holm_adjust([r["day_t_p_worse"] for r in judged]) if judged else []
    return {"promotions": len(rows), "judged": len(judged),
            "significantly_worse_days_as_units_holm": sum(p < alpha for p in holm if not math.isnan(p)),
            "with_fewer_than_7_days": sum(0 < r["days"] < EVIDENCE_DAYS for r in rows),
            "significantly_worse": sum(r["significant"] for r in judged),
            "significantly_worse_daywise": sum(r["daywise_significant"] for r in judged),
            "significantly_worse_days_as_units": sum(r["day_t_significant"] for r in judged),
            "worse_by_point_estimate": sum(r["delta"] < 0 for r in judged),
            "mean_delta": float(np.mean([r["delta"] for r in judged])) if judged else math.nan,
            "worst": sorted(judged, key=lambda r: r["p_worse"])[:5], "goal_significant": 0}


# ---------------------------------------------------------------------------------------------- figure 3: alerts


def check_evaluations(dagster_home: Path) -> list[dict]:
    """Every check evaluation the instance recorded, read per run as the check-failure sensor reads them."""
    import dagster as dg
    from dagster._core.instance.ref import InstanceRef

    out = []
    with dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(dagster_home))) as instance:
        for run in instance.get_runs():
            cursor = None
            while True:
                conn = instance.get_records_for_run(run.run_id, cursor=cursor,
                                                    of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=5000)
                for record in conn.records:
                    evaluation = record.event_log_entry.dagster_event.event_specific_data
                    out.append({"evaluation": evaluation, "run_id": run.run_id, "job": run.job_name,
                                "timestamp": record.event_log_entry.timestamp})
                if not conn.has_more:
                    break
                cursor = conn.cursor
    return out


def instance_alerts(evaluations: list[dict], spec_name: str, latest: dict) -> list[dict]:
    """Each failed evaluation as the check-failure sensor's alert (its own mapping function), marked
    ``continues`` when the sensor's episode rule (``continues_episode``) sends nothing for it: the same check
    failed on the day before (its newest evaluation, ``latest``)."""
    import dagster as dg
    from ml_assets.defs.automation.sensors import check_evaluation_to_alert, continues_episode

    decision_checks = {dg.AssetCheckKey(dg.AssetKey([spec_name, "champion"]), "promotion")}

    def failed_on(key: dg.AssetCheckKey, day: str) -> bool:
        return latest.get((key.asset_key.path[-1], key.name, day)) is False

    out = []
    for e in evaluations:
        ev = e["evaluation"]
        if ev.passed:
            continue
        alert = check_evaluation_to_alert(ev, decision_checks, e["run_id"], e["job"], e["timestamp"])
        out.append({"severity": alert.severity, "check": f"{ev.asset_key.path[-1]}:{ev.check_name}",
                    "partition": ev.partition, "source": "instance", "continues": continues_episode(ev, failed_on)})
    return out


def latest_outcomes(evaluations: list[dict]) -> dict[tuple[str, str, str], bool]:
    """(asset, check, day) -> passed, for the newest evaluation of each."""
    latest = {}
    for e in sorted(evaluations, key=lambda e: e["timestamp"]):
        ev = e["evaluation"]
        latest[(ev.asset_key.path[-1], ev.check_name, ev.partition)] = bool(ev.passed)
    return latest


def summarize_alerts(alerts: list[dict], days: list[str]) -> dict:
    """The alerts sent (an alert continuing an episode sends nothing), and the failing check-days behind them."""
    inside = [a for a in alerts if a["partition"] in set(days) and not a.get("continues")]
    months = len(days) / DAYS_PER_MONTH if days else math.nan
    warnings = [a for a in inside if a["severity"] == "warning"]
    per_check = Counter(a["check"] for a in warnings)
    per_month = Counter(a["partition"][:7] for a in warnings)
    failing = {(a["check"], a["partition"]) for a in alerts
               if a["partition"] in set(days) and a["severity"] == "warning"}
    return {"days": len(days), "months": months, "failing_warning_check_days": len(failing), "warnings": len(warnings),
            "warnings_per_month": share(len(warnings), months),
            "failing_check_days_per_month": share(len(failing), months),
            "per_check": dict(per_check.most_common()),
            "per_check_per_month": {c: share(n, months) for c, n in per_check.most_common()},
            "per_calendar_month": dict(sorted(per_month.items())),
            "errors": sum(a["severity"] == "error" for a in inside), "infos": sum(a["severity"] == "info" for a in inside),
            "errors_per_check": dict(Counter(a["check"] for a in inside if a["severity"] == "error").most_common()),
            "goal_per_month": ALERTS_GOAL}


SIMULATED_OLD = {"live_performance:live_auc_drop", "data_profile:feature_drift", "live_performance:label_balance",
                 "champion:champion_freshness", "champion:promotion", "model_evaluation:model_sanity"}


def old_alerts(store: Store, scorer: Scorer, chain: dict, notes: dict, instance: list[dict], days: list[str],
               offset: int, max_lag: int, eval_auc_of) -> tuple[list[dict], dict]:
    """The alerts the old rules would raise on these days: simulated for the checks whose rules changed, carried
    over from the instance for the others; and the columns found over their drift threshold (offline, by rule)."""
    drift_quiet = set(store.spec.features.drift_quiet)
    thresholds = {"linf": 0.2, "jensen_shannon": 0.3}  # DataQualitySettings, unchanged since b80552c
    out = [a for a in instance if a["check"] not in SIMULATED_OLD]
    drift_columns = {"new": Counter(), "old": Counter()}
    labelled_days = [d for d in store.days("labelled_features")]
    for day in days:
        # champion_freshness: today's rule on the old chain's champion of the day
        lag = lag_of((chain.get(day) or {}).get("champion"), day)
        if lag is not None and lag > max_lag:
            out.append({"severity": "warning", "check": "champion:champion_freshness", "partition": day})
        # model_sanity (refusing: an error alert) and promotion (info) are not warnings under either rule set
        if day in notes and not notes[day]["old_sanity"]:
            out.append({"severity": "error", "check": "model_evaluation:model_sanity", "partition": day})
        state = chain.get(day) or {}
        if state.get("champion") is not None and day in notes and notes[day]["old_sanity"] and state["action"] != "promote":
            out.append({"severity": "info", "check": "champion:promotion", "partition": day})
        # feature_drift: a NaN drift counted as over; evaluated without a reference too
        profile = store.usable("data_profile", day)
        if profile is not None and "drift" in profile.columns:
            drift = profile.select("column", "drift_metric", "drift").unique("column")
            watched = drift.filter(~pl.col("column").is_in(list(drift_quiet)) & pl.col("drift_metric").is_not_null())
            over = watched.filter(pl.col("drift") > pl.col("drift_metric").replace_strict(thresholds,
                                                                                      return_dtype=pl.Float64))
            if over.height:
                out.append({"severity": "warning", "check": "data_profile:feature_drift", "partition": day})
                drift_columns["old"].update(over["column"].to_list())
                if not watched["drift"].is_nan().all():  # the new rule: not evaluated without a reference
                    drift_columns["new"].update(over["column"].to_list())
        rows = store.holdout(day)
        if rows is None:
            continue
        # label_balance: |share - trailing share| <= 0.2, no test
        trailing = [d for d in labelled_days if day_add(day, -28) <= d < day and store.holdout(d) is not None]
        if trailing:
            rate = float(store.y(day).mean())
            ref = float(np.concatenate([store.y(d) for d in trailing]).mean())
            if not abs(rate - ref) <= OLD["label_rate_band"]:
                out.append({"severity": "warning", "check": "live_performance:label_balance", "partition": day})
        # live_auc_drop: one day's live AUC vs the champion's evaluation AUC, tolerance 0.05
        if store.usable("batch_predictions", day) is None:
            continue
        decided_on = day_add(day, offset)
        ref = (chain.get(decided_on) or {}).get("champion")
        if ref is None:
            continue
        live_auc = auc(store.y(day), scorer.score(ref, day))
        evaluation_auc = eval_auc_of(ref)
        if not (math.isnan(live_auc) or math.isnan(evaluation_auc)) and evaluation_auc - live_auc > OLD["live_auc_tolerance"]:
            out.append({"severity": "warning", "check": "live_performance:live_auc_drop", "partition": day})
    return out, {k: dict(v.most_common(10)) for k, v in drift_columns.items()}


# ---------------------------------------------------------------------------------------------- figure 5: gates


def sanity_rates(store: Store, days: list[str], latest: dict, rng: np.random.Generator, repeats: int = 2) -> dict:
    from ml_assets.core import decisions

    n = new_real = old_real = new_shuf = old_shuf = shuf_n = agree = compared = 0
    for day in days:
        ev = store.evaluation(day)
        if ev is None:
            continue
        y = store.y(day)
        p = ev[f"p_{ev['chosen'][0]}"].to_numpy()
        base = ev["p_baseline"].to_numpy()
        n += 1
        verdict = decisions.sanity(y, p, base)
        new_real += not verdict["passed"]
        old_real += not old_sanity(y, p, base)
        stored = latest.get(("model_evaluation", "model_sanity", day))
        if stored is not None:
            compared += 1
            agree += stored == verdict["passed"]
        for _ in range(repeats):
            ys = rng.permutation(y)
            shuf_n += 1
            new_shuf += not decisions.sanity(ys, p, base)["passed"]
            old_shuf += not old_sanity(ys, p, base)
    return {"days": n, "new": {"refused_real": share(new_real, n), "refused_shuffled_labels": share(new_shuf, shuf_n)},
            "old": {"refused_real": share(old_real, n), "refused_shuffled_labels": share(old_shuf, shuf_n)},
            "shuffles": shuf_n, "new_rule_agrees_with_stored": share(agree, compared), "compared": compared}


def promotion_rates(store: Store, scorer: Scorer, chain: dict, days: list[str], latest: dict,
                    rng: np.random.Generator) -> dict:
    from ml_assets.core import champion as C
    from ml_assets.core import decisions

    policy = decisions.PromotionPolicy()
    counts = Counter()
    drops = []
    for day in days:
        pointer, refused, _ = store.record("deployment_bundle", day)
        ev = store.evaluation(day)
        state = chain.get(day_add(day, -1))
        if not isinstance(pointer, dict) or refused or ev is None or state is None or state["champion"] is None:
            continue
        y, rows = store.y(day), store.holdout(day)
        family = pointer["family"]
        p_real = scorer.score({"kind": "bundle", **pointer}, day)
        p_deg = degrade(y, p_real, DEGRADE_AUC, rng)
        drops.append(auc(y, p_real) - auc(y, p_deg))
        champion = state["champion"]
        p_champion = scorer.score(champion, day)
        references = {C.name(s): scorer.score(s, day) for s in state["served"]
                      if (s["model_line"], s["version"]) != (champion["model_line"], champion["version"])}
        references[C.name(champion)] = p_champion
        slices = store.slices(day)
        counts["days"] += 1
        for kind, p in (("real", p_real), ("degraded", p_deg)):
            evidence = {}
            for column in [c for c in ev.columns if c.startswith("p_") and c != "p_baseline"]:
                scores = p if column[2:] == family else ev[column].to_numpy()
                record = decisions.day_evidence(y, scores, p_champion)
                if record is not None:
                    evidence[column[2:]] = record
            track = [*state["evidence"].get(family, []),
                     *([{"day": day, **evidence[family]}] if family in evidence else [])]
            decision = decisions.promotion(
                y, p, champion=p_champion, champion_name=C.name(champion), references=references, evidence=track,
                slices=slices, parity_passed=pointer["parity_passed"], latency_p95_ms=pointer["single_row_p95_ms"],
                size_bytes=pointer["size_bytes"], policy=policy)
            counts[f"new_refused_{kind}"] += not decision.promote
            counts[f"old_refused_{kind}"] += not old_promotion(y, p, p_champion, slices, pointer["parity_passed"])
            if kind == "real":
                stored = latest.get(("champion", "promotion", day))
                if stored is not None:
                    counts["compared"] += 1
                    counts["agree"] += stored == decision.promote
    n = counts["days"]
    return {"days": n, "degraded_auc_drop_mean": float(np.mean(drops)) if drops else math.nan,
            "new": {"refused_real": share(counts["new_refused_real"], n),
                    "refused_degraded": share(counts["new_refused_degraded"], n)},
            "old": {"refused_real": share(counts["old_refused_real"], n),
                    "refused_degraded": share(counts["old_refused_degraded"], n)},
            "new_rule_agrees_with_stored": share(counts["agree"], counts["compared"]), "compared": counts["compared"]}


def live_series(store: Store, chain: dict, offset: int) -> dict[str, dict]:
    """Each stored day's live estimate of the batch predictions (as live_performance computes it)."""
    from ml_assets.core import live

    key, label, prediction = store.key, store.label, store.spec.prediction
    out = {}
    for day in sorted(set(store.days("batch_predictions")) | set(store.days("labelled_features"))):
        p, lab = store.usable("batch_predictions", day), store.usable("labelled_features", day)
        estimate = {"rows": 0, "auc": math.nan, "variance": math.nan}
        if p is not None and lab is not None and p.height:
            estimate = live.day_estimate(live.join_labels(p, lab, key, label, prediction), label, prediction)
        ref = (chain.get(day_add(day, offset)) or {}).get("champion")
        out[day] = {"day": day, **estimate, "champion": ref,
                    "served": p is not None and lab is not None}
    return out


def live_drop_rates(series: dict, days: list[str], latest: dict, eval_auc_of, alpha: float, window: int,
                    reference: int) -> dict:
    from ml_assets.core import live

    span = window + reference
    counts = Counter()
    for day in days:
        if day not in series or not series[day]["served"]:
            continue
        records = [series[d] for d in sorted(series) if day_add(day, -(span - 1)) <= d <= day]
        real = live.drop_test(records, window, reference, alpha)
        # the old rule: today's AUC vs the champion's evaluation AUC
        today = series[day]
        ref = today["champion"]
        evaluation_auc = eval_auc_of(ref) if ref is not None else math.nan
        if ref is not None and not math.isnan(today["auc"]) and not math.isnan(evaluation_auc):
            counts["old_days"] += 1
            counts["old_real"] += evaluation_auc - today["auc"] > OLD["live_auc_tolerance"]
            counts["old_dropped"] += evaluation_auc - (today["auc"] - DEGRADE_AUC) > OLD["live_auc_tolerance"]
        if not real["evaluated"]:
            continue
        counts["new_days"] += 1
        counts["new_real"] += not real["passed"]
        stored = latest.get(("live_performance", "live_auc_drop", day))
        if stored is not None:
            counts["compared"] += 1
            counts["agree"] += stored == real["passed"]
        for k in (1, 3, window):
            dropped = [dict(r) for r in records]
            for r in dropped[-k:]:
                r["auc"] = r["auc"] - DEGRADE_AUC
            counts[f"new_dropped_{k}"] += not live.drop_test(dropped, window, reference, alpha)["passed"]
    n, m = counts["new_days"], counts["old_days"]
    return {"new": {"days": n, "fires_real": share(counts["new_real"], n),
                    **{f"fires_after_drop_last_{k}_days": share(counts[f"new_dropped_{k}"], n) for k in (1, 3, window)}},
            "old": {"days": m, "fires_real": share(counts["old_real"], m),
                    "fires_after_drop_today": share(counts["old_dropped"], m)},
            "new_rule_agrees_with_stored": share(counts["agree"], counts["compared"]), "compared": counts["compared"]}


# ---------------------------------------------------------------------------------------------- output


def fmt(v, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if pct:
        return f"{100 * v:.1f}%"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def print_table(r: dict) -> None:
    new, old = r["new"], r["old"]
    line = "-" * 104
    print(line)
    print(f"Decisions on {r['days']['start']}..{r['days']['end']} ({r['days']['count']} days) of {r['from']}")
    print(line)
    print(f"{'figure':58} {'new rules':>20} {'old rules (b80552c)':>22}")
    rows = [
        ("1. fresh champion (lag <= 1 day) share of served days",
         f"{fmt(new['freshness']['share'], True)} of {new['freshness']['served_days']}",
         f"{fmt(old['freshness']['share'], True)} of {old['freshness']['served_days']}"),
        ("   goal >= 90%", "", ""),
        ("2. promotions (with a predecessor) in the days", new["promotions"]["promotions"], old["promotions"]["promotions"]),
        ("   significantly worse over the next 7 days (pooled rows)", new["promotions"]["significantly_worse"],
         old["promotions"]["significantly_worse"]),
        ("   significantly worse (day by day, pooled)", new["promotions"]["significantly_worse_daywise"],
         old["promotions"]["significantly_worse_daywise"]),
        ("   significantly worse (the 7 days as units, t test)", new["promotions"]["significantly_worse_days_as_units"],
         old["promotions"]["significantly_worse_days_as_units"]),
        ("     ... after Holm over the promotions", new["promotions"]["significantly_worse_days_as_units_holm"],
         old["promotions"]["significantly_worse_days_as_units_holm"]),
        ("   worse by point estimate", new["promotions"]["worse_by_point_estimate"],
         old["promotions"]["worse_by_point_estimate"]),
        ("3. warning alerts per month (as sent; goal <= 2)", fmt(new["alerts"]["warnings_per_month"]),
         fmt(old["alerts"]["warnings_per_month"])),
        ("   failing warning check-days per month", fmt(new["alerts"]["failing_check_days_per_month"]),
         fmt(old["alerts"]["failing_check_days_per_month"])),
        ("   error alerts (refusing checks) / info (refused promotion)",
         f"{new['alerts']['errors']} / {new['alerts']['infos']}", f"{old['alerts']['errors']} / {old['alerts']['infos']}"),
    ]
    for name, a, b in rows:
        print(f"{name:58} {str(a):>20} {str(b):>22}")
    checks = sorted(set(new["alerts"]["per_check"]) | set(old["alerts"]["per_check"]))
    if checks:
        print("   warnings per check (per month):")
    for c in checks:
        a = new["alerts"]["per_check_per_month"].get(c, 0.0)
        b = old["alerts"]["per_check_per_month"].get(c, 0.0)
        print(f"     {c:54} {fmt(a):>20} {fmt(b):>22}")
    over = r["feature_drift_columns_over"]
    for rules in ("new", "old"):
        if over[rules]:
            print(f"   feature_drift, columns over their threshold ({rules} rules, days): "
                  + ", ".join(f"{c} {n}" for c, n in list(over[rules].items())[:6]))
    g = r["gates"]
    print(line)
    print(f"{'5. gate firing rates (share of days the gate says no)':58} {'new rules':>20} {'old rules':>22}")
    s = g["sanity"]
    print(f"{'   sanity, real holdout scores (' + str(s['days']) + ' days)':58} {fmt(s['new']['refused_real'], True):>20} "
          f"{fmt(s['old']['refused_real'], True):>22}")
    print(f"{'   sanity, labels shuffled within the day':58} {fmt(s['new']['refused_shuffled_labels'], True):>20} "
          f"{fmt(s['old']['refused_shuffled_labels'], True):>22}")
    p = g["promotion"]
    print(f"{'   promotion, real candidate (' + str(p['days']) + ' days)':58} {fmt(p['new']['refused_real'], True):>20} "
          f"{fmt(p['old']['refused_real'], True):>22}")
    print(f"{'   promotion, candidate degraded (AUC -' + fmt(p['degraded_auc_drop_mean']) + ')':58} "
          f"{fmt(p['new']['refused_degraded'], True):>20} {fmt(p['old']['refused_degraded'], True):>22}")
    lv = g["live_auc_drop"]
    print(f"{'   live_auc_drop, real series (new ' + str(lv['new']['days']) + ' / old ' + str(lv['old']['days']) + ' days)':58} "
          f"{fmt(lv['new']['fires_real'], True):>20} {fmt(lv['old']['fires_real'], True):>22}")
    for k in (1, 3, 7):
        key = f"fires_after_drop_last_{k}_days"
        old_v = fmt(lv["old"]["fires_after_drop_today"], True) if k == 1 else ""
        print(f"{'   live_auc_drop, AUC -0.05 on the last ' + str(k) + ' day(s)':58} {fmt(lv['new'].get(key), True):>20} "
              f"{old_v:>22}")
    print(f"   offline new rules vs stored decisions: sanity {fmt(s['new_rule_agrees_with_stored'], True)} of "
          f"{s['compared']}, promotion {fmt(p['new_rule_agrees_with_stored'], True)} of {p['compared']}, "
          f"live_auc_drop {fmt(lv['new_rule_agrees_with_stored'], True)} of {lv['compared']}")
    print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--from", dest="source", required=True, help="a kept replay: DIR/home and DIR/dagster")
    ap.add_argument("--start", help="first day judged (default 2013-02-01, or the replay's first day)")
    ap.add_argument("--end", help="last day judged (default: the replay's last champion day)")
    ap.add_argument("--dataset", default=os.environ.get("ML_ASSETS_DATASET", "nycflights13"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    started = time.time()
    base = Path(args.source).resolve()
    home, dagster_home = base / "home", base / "dagster"
    if not home.is_dir() or not (dagster_home / "dagster.yaml").exists():
        print(f"{base}: expected a kept replay (home/ and dagster/dagster.yaml)", file=sys.stderr)
        return 2
    os.environ["ML_ASSETS_HOME"], os.environ["DAGSTER_HOME"] = str(home), str(dagster_home)
    os.environ["ML_ASSETS_DATASET"] = args.dataset
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

    from ml_assets.core.spec import load_spec, outcome_lag_days
    from ml_assets.defs.deployment.champion import MAX_LAG_DAYS
    from ml_assets.defs.monitoring.live import MonitoringSettings

    spec = load_spec(args.dataset)
    store = Store(home, spec)
    scorer = Scorer(store)
    champion_days = store.days("champion")
    if not champion_days:
        print(f"{home}: no champion day stored: nothing to judge", file=sys.stderr)
        return 2
    first, last = champion_days[0], champion_days[-1]
    start = args.start or ("2013-02-01" if "2013-02-01" <= last else first)
    end = args.end or last
    days = day_span(max(start, first), min(end, last))
    if not days:
        print(f"no day between {start} and {end} in the replay ({first}..{last})", file=sys.stderr)
        return 2
    all_days = day_span(first, last)
    offset = -(1 + outcome_lag_days(spec))
    first_model_day = day_add(spec.first_day.isoformat(), 1)
    rng = np.random.default_rng(args.seed)

    def eval_auc_of(ref: dict) -> float:
        """A champion's evaluation AUC: its own holdout day's AUC (model_evaluation of its day)."""
        ev = store.evaluation(ref["day"])
        family = ref.get("family")
        if ev is None or family is None or f"p_{family}" not in ev.columns:
            return math.nan
        return auc(store.y(ref["day"]), ev[f"p_{family}"].to_numpy())

    chain = new_chain(store, all_days)
    for state in chain.values():  # stored pointers are bundles
        if state.get("champion") is not None:
            state["champion"] = {"kind": "bundle", **state["champion"]}
    o_chain, o_promotions, notes = old_chain(store, scorer, all_days, first_model_day)

    evaluations = check_evaluations(dagster_home)
    latest = latest_outcomes(evaluations)
    alerts_new = instance_alerts(evaluations, spec.name, latest)
    # the old sensor alerted on every failed evaluation: no episodes
    carried = [{**a, "continues": False} for a in alerts_new]
    alerts_old, drift_columns = old_alerts(store, scorer, o_chain, notes, carried, days, offset, MAX_LAG_DAYS, eval_auc_of)

    monitoring = MonitoringSettings()
    series = live_series(store, chain, offset)
    result = {
        "bench": "decisions", "from": str(base), "dataset": spec.name,
        "days": {"start": days[0], "end": days[-1], "count": len(days), "replay": [first, last]},
        "new": {"freshness": freshness(store, chain, days, offset, MAX_LAG_DAYS, True),
                "promotions": judge_promotions(store, scorer, promotions_of_new_chain(chain, all_days), days[0],
                                               days[-1], last),
                "alerts": summarize_alerts(alerts_new, days)},
        "old": {"freshness": freshness(store, o_chain, days, offset, MAX_LAG_DAYS, False),
                "promotions": judge_promotions(store, scorer, o_promotions, days[0], days[-1], last),
                "alerts": summarize_alerts(alerts_old, days), "rules": OLD},
        "gates": {"sanity": sanity_rates(store, days, latest, rng),
                  "promotion": promotion_rates(store, scorer, chain, days, latest, rng),
                  "live_auc_drop": live_drop_rates(series, days, latest, eval_auc_of, monitoring.alpha, 7, 28)},
        "feature_drift_columns_over": drift_columns,
        "check_evaluations_read": len(evaluations),
    }
    print_table(result)
    result.update(command=" ".join([Path(sys.executable).name, *sys.argv]), date=dt.datetime.now(dt.timezone.utc)
                  .isoformat(timespec="seconds"), loadavg=list(os.getloadavg()), seconds=round(time.time() - started, 1))
    print(json.dumps(clean(result), sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
