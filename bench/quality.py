"""The deployed figure: the champion's own batch predictions scored against the truth over a long replay, beside
the plain daily-retrain script on the same days, in one run; and the feature ablation.

    .venv/bin/python bench/quality.py --start 2013-01-01 --end 2013-12-31 --families xgboost --keep /tmp/year
    .venv/bin/python bench/quality.py --from /tmp/year            # score a kept replay again (no new run)
    .venv/bin/python bench/quality.py --ablation --step 6          # each feature group's paired delta
    .venv/bin/python bench/quality.py --from /tmp/year --tuning --step 2   # did the adopted searches help?
    .venv/bin/python bench/quality.py --recipes --step 6           # a longer window, seeds, cheaper fits ...
    .venv/bin/python bench/quality.py --recipes --variants "28-day window; max_bin 64"   # some of them

The replay is the user's path (`ml-assets land` + `ml-assets backfill --assets all --wait`, as bench/backfill.py
times it). Scored: every day from --score-start whose `batch_predictions` were made by a champion (the model
decided on D-2, never trained on D) and whose outcomes landed, joined on the flight key with `labelled_features`
(cancelled and diverted flights have no label). The plain script (../shared/baselines/plain_daily_retrain.py, its
own defaults: a 28-day window, trained on D-28..D-1) runs over the same range; the comparison is paired per day.

The ablation replays the one feature path (``core.features.build_features``) and the default xgboost recipe on
every --step-th day (trained on D-58..D-3, the deployed timeline), once with every feature and once without each
group (a registered feature function's columns, or a join's), and prints each group's paired delta.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
import backfill as B  # noqa: E402  (bench/backfill.py: the replay on the user's path)


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from ml_assets.core.evaluation import roc_auc

    return roc_auc(y, p)


def read_day(folder: Path, day: str) -> pl.DataFrame | None:
    """A stored day as the server reads it: None when absent or stored as refused."""
    from ml_assets.serving.context import read_stored

    return read_stored(folder / f"{day}.parquet")


def deployed_per_day(home: Path, dataset: str, start: dt.date, end: dt.date) -> pl.DataFrame:
    """Per day: the champion's batch predictions against the labels of the same flights."""
    from ml_assets.core.spec import load_spec

    spec = load_spec()
    key, label = list(spec.features.key), spec.label.name
    assets = home / "assets" / dataset
    rows = []
    day = start
    while day <= end:
        predicted = read_day(assets / "batch_predictions", day.isoformat())
        truth = read_day(assets / "labelled_features", day.isoformat())
        if predicted is not None and truth is not None and predicted.height:
            joined = predicted.join(truth.select(*key, label), on=key, how="inner").drop_nulls(label)
            y = joined[label].cast(pl.Float64).to_numpy()
            if y.size and 0 < y.sum() < y.size:
                versions = joined["model_version"].unique().to_list()
                rows.append((day, auc(y, joined[spec.prediction].to_numpy()), y.size, ",".join(versions)))
        day += dt.timedelta(days=1)
    return pl.DataFrame(rows, schema={"date": pl.Date, "auc": pl.Float64, "n": pl.Int64, "model": pl.String},
                        orient="row")


def paired(a: pl.DataFrame, b: pl.DataFrame, label_a: str, label_b: str) -> dict:
    j = a.select("date", pl.col("auc").alias("a")).join(b.select("date", pl.col("auc").alias("b")), on="date")
    d = (j["a"] - j["b"]).to_numpy()
    return {"days": j.height, label_a: round(float(j["a"].mean()), 4), label_b: round(float(j["b"].mean()), 4),
            "delta": round(float(d.mean()), 4), "delta_se": round(float(d.std(ddof=1) / math.sqrt(d.size)), 4),
            "days_better": int((d > 0).sum()),
            "by_month": j.group_by(pl.col("date").dt.month().alias("month")).agg(
                pl.col("a").mean().round(4).alias(label_a), pl.col("b").mean().round(4).alias(label_b),
                pl.len().alias("days")).sort("month").rows()}


# ---------------------------------------------------------------------------------------------- ablation


def feature_groups(spec) -> dict[str, list[str]]:
    """Model input columns by where they come from: each join, each registered feature function."""
    from ml_assets.core import landing as L
    from ml_assets.core.features import FeatureContext, prepare, with_date
    from ml_assets.datasets import feature_function

    inputs = set(spec.features.numeric) | set(spec.features.categorical)
    groups = {f"join {j.source}": [c for c in j.columns.values() if c in inputs] for j in spec.joins}
    day = spec.first_day
    tables = L.source_tables(spec)
    sources = {n: prepare(spec, n, L.source_rows(spec, n, day)) for n in spec.schedule_sources if n != spec.events_name}
    sources.update({n: prepare(spec, n, tables[r.table].select(list(r.columns))) for n, r in spec.reference.items()})
    rows = with_date(spec, L.source_rows(spec, spec.events_name, day))
    context = FeatureContext(spec, sources)
    for name in spec.features.functions:
        before = set(rows.collect_schema().names())
        rows = feature_function(name)(rows, context)
        groups[name] = [c for c in rows.collect_schema().names() if c not in before and c in inputs]
    return {g: cols for g, cols in groups.items() if cols}


def feature_table(cache: Path) -> pl.DataFrame:
    """Every day's features through the one feature path, labelled (cached: the ablation and the recipes)."""
    from ml_assets.core import features as F
    from ml_assets.core import landing as L
    from ml_assets.core.dates import day_range
    from ml_assets.core.spec import load_spec

    spec = load_spec()
    if not cache.exists():
        tables = L.source_tables(spec)
        refs = {n: tables[r.table].select(list(r.columns)) for n, r in spec.reference.items()}
        parts = []
        for d in day_range(spec.first_day, spec.last_day):
            f = F.build_features(spec, {**{n: L.source_rows(spec, n, d) for n in spec.schedule_sources}, **refs})
            parts.append(F.attach_label(spec, f, L.source_rows(spec, spec.outcomes_name, d)))
        pl.concat(parts, how="vertical_relaxed").write_parquet(cache)
    return pl.read_parquet(cache).filter(pl.col(spec.label.name).is_not_null())


def ablation(step: int, start: dt.date, end: dt.date, cache: Path) -> list[dict]:
    from ml_assets.core import families as FAM
    from ml_assets.core.dates import day_range
    from ml_assets.core.spec import load_spec

    spec = load_spec()
    label = spec.label.name
    data = feature_table(cache)
    fam = FAM.get("xgboost")
    groups = feature_groups(spec)
    days = day_range(start, end)[::step]
    variants = {"all features": []} | {f"without {g}": cols for g, cols in groups.items()}
    scores: dict[str, dict[dt.date, float]] = {}
    for name, dropped in variants.items():
        inputs = FAM.ModelInputs([c for c in spec.features.categorical if c not in dropped],
                                 [c for c in spec.features.numeric if c not in dropped], label, spec.prediction,
                                 {c: v for c, v in spec.monotone_inputs.items() if c not in dropped})
        scores[name] = {}
        started = time.time()
        for d in days:
            window = data.filter((pl.col("date") >= d - dt.timedelta(days=58)) & (pl.col("date") <= d - dt.timedelta(days=3)))
            model = fam.train(window, window.head(0), inputs, params=spec.models.get("xgboost"), seed=0)
            test = data.filter(pl.col("date") == d)
            scores[name][d] = auc(test[label].cast(pl.Float64).to_numpy(), fam.predict(model, test))
        print(f"  {name}: {np.mean(list(scores[name].values())):.4f} ({time.time() - started:.0f} s)", flush=True)
    full = scores["all features"]
    out = []
    for name, dropped in variants.items():
        if not dropped:
            continue
        diff = np.array([full[d] - scores[name][d] for d in days])
        out.append({"group": name.removeprefix("without "), "columns": len(dropped),
                    "auc_without": round(float(np.mean(list(scores[name].values()))), 4),
                    "delta_with_group": round(float(diff.mean()), 4),
                    "se": round(float(diff.std(ddof=1) / math.sqrt(diff.size)), 4)})
    return [{"group": "(all features)", "auc": round(float(np.mean(list(full.values()))), 4), "days": len(days)},
            *out]


def recipes(step: int, start: dt.date, end: dt.date, cache: Path, names: list[str] | None = None) -> list[dict]:
    """Variants of the model recipe on the deployed timeline (trained on the window ending D-3, scored on D),
    every ``step``-th day, each paired per day with the spec's recipe: a longer window, seeds averaged, and the
    average of the models of three consecutive windows (as averaging the last three daily champions would)."""
    from ml_assets.core import families as FAM
    from ml_assets.core.dates import day_range
    from ml_assets.core.spec import load_spec

    spec = load_spec()
    label, fam = spec.label.name, FAM.get("xgboost")
    data = feature_table(cache)
    inputs = FAM.ModelInputs(list(spec.features.categorical), list(spec.features.numeric), label, spec.prediction,
                             spec.monotone_inputs)
    params = dict(spec.models.get("xgboost", {}))

    def fit(d: dt.date, days: int, seed: int = 0, shift: int = 0, **changes):
        last = d - dt.timedelta(days=3 + shift)
        window = data.filter((pl.col("date") > last - dt.timedelta(days=days)) & (pl.col("date") <= last))
        return fam.train(window, window.head(0), inputs, params={**params, **changes}, seed=seed)

    every = {
        "recipe (56 days)": lambda d, t: fam.predict(fit(d, 56), t),
        "84-day window": lambda d, t: fam.predict(fit(d, 84), t),
        "3 seeds averaged": lambda d, t: np.mean([fam.predict(fit(d, 56, seed=s), t) for s in range(3)], axis=0),
        "3 consecutive windows averaged": lambda d, t: np.mean([fam.predict(fit(d, 56, shift=k), t)
                                                                 for k in range(3)], axis=0),
        # cheaper fits (issue 15: training is most of a year's backfill)
        "300 trees, learning rate 0.08": lambda d, t: fam.predict(fit(d, 56, n_estimators=300, learning_rate=0.08), t),
        "200 trees, learning rate 0.12": lambda d, t: fam.predict(fit(d, 56, n_estimators=200, learning_rate=0.12), t),
        "28-day window": lambda d, t: fam.predict(fit(d, 28), t),
        "max_bin 64": lambda d, t: fam.predict(fit(d, 56, max_bin=64), t),
    }
    if unknown := set(names or ()) - set(every):
        raise SystemExit(f"--variants: unknown {sorted(unknown)}; known: {list(every)}")
    variants = {"recipe (56 days)": every["recipe (56 days)"],
                **{n: every[n] for n in (names or every) if n != "recipe (56 days)"}}
    days = [d for d in day_range(start, end)[::step] if d - dt.timedelta(days=87) >= spec.first_day]
    scores: dict[str, list[float]] = {name: [] for name in variants}
    seconds = dict.fromkeys(variants, 0.0)
    for d in days:
        test = data.filter(pl.col("date") == d)
        y = test[label].cast(pl.Float64).to_numpy()
        for name, score in variants.items():
            started = time.perf_counter()
            scores[name].append(auc(y, score(d, test)))
            seconds[name] += time.perf_counter() - started
        print(f"  {d}: " + ", ".join(f"{n} {v[-1]:.4f}" for n, v in scores.items()), flush=True)
    base = np.array(scores["recipe (56 days)"])
    out = []
    for name, values in scores.items():
        row = {"variant": name, "auc": round(float(np.mean(values)), 4), "days": len(days),
               "seconds_per_day": round(seconds[name] / len(days), 2)}
        if name != "recipe (56 days)":
            diff = np.array(values) - base
            row.update(delta=round(float(diff.mean()), 4), se=round(float(diff.std(ddof=1) / math.sqrt(diff.size)), 4),
                       days_better=int((diff > 0).sum()))
        out.append(row)
    return out


# ---------------------------------------------------------------------------------------------- tuning


def tuning_value(base: Path, step: int) -> dict:
    """Did the adopted searches help out of sample? For each search of the kept replay that adopted a trial (day
    S), the candidates of S, S+step, ... S+6 (the days that train with it before the next search) are refit on
    their stored training_set with the defaults and with the adopted params, and both score the day they serve
    (C+2: the champion decided on C serves C+2); paired AUC delta, adopted minus defaults."""
    from ml_assets.core import families as FAM
    from ml_assets.core.spec import load_spec
    from ml_assets.core.tuning import WINDOW_PARAM, recent_days

    spec = load_spec()
    assets = base / "home" / "assets" / spec.name
    fam = FAM.get("xgboost")
    inputs = FAM.ModelInputs(list(spec.features.categorical), list(spec.features.numeric), spec.label.name,
                             spec.prediction, spec.monotone_inputs)
    pairs = []
    for path in sorted((assets / "xgboost_params").glob("*.json")):
        value = json.loads(path.read_text())["value"]
        if not value.get("search", {}).get("adopted"):
            continue
        searched = dt.date.fromisoformat(path.stem)
        for offset in range(0, 7, step):
            day = searched + dt.timedelta(days=offset)
            training = read_day(assets / "training_set", day.isoformat())
            served = read_day(assets / "labelled_features", (day + dt.timedelta(days=2)).isoformat())
            if training is None or served is None:
                continue
            served = served.drop_nulls(spec.label.name)
            y = served[spec.label.name].cast(pl.Float64).to_numpy()
            scores = []
            for params in (dict(spec.models.get("xgboost", {})), dict(value["params"])):
                rows = recent_days(training, params.pop(WINDOW_PARAM, None)).drop("split")
                model = fam.train(rows, rows.head(0), inputs, params=params or None, seed=0)
                scores.append(auc(y, fam.predict(model, served)))
            pairs.append((path.stem, day.isoformat(), *scores))
            print(f"  search {path.stem} candidate {day}: defaults {scores[0]:.4f} adopted {scores[1]:.4f}",
                  flush=True)
    d = np.array([b - a for _, _, a, b in pairs])
    return {"adopted_searches": len({p[0] for p in pairs}), "candidate_days": len(pairs),
            "defaults": round(float(np.mean([p[2] for p in pairs])), 4) if pairs else None,
            "adopted": round(float(np.mean([p[3] for p in pairs])), 4) if pairs else None,
            "delta": round(float(d.mean()), 4) if d.size else None,
            "delta_se": round(float(d.std(ddof=1) / math.sqrt(d.size)), 4) if d.size > 1 else None,
            "days_better": int((d > 0).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--start", default="2013-01-01")
    ap.add_argument("--end", default="2013-12-31")
    ap.add_argument("--score-start", default="2013-02-01")
    ap.add_argument("--families", default="xgboost")
    ap.add_argument("--keep", help="run the replay in this folder and keep it")
    ap.add_argument("--from", dest="source", help="score a replay kept by --keep (bench/backfill.py --keep too)")
    ap.add_argument("--ablation", action="store_true", help="the feature ablation instead of the replay")
    ap.add_argument("--step", type=int, default=6, help="ablation: every N-th day")
    ap.add_argument("--tuning", action="store_true", help="with --from: the adopted searches, out of sample")
    ap.add_argument("--recipes", action="store_true", help="variants of the model recipe, every --step-th day")
    ap.add_argument("--variants", help="with --recipes: the variants to try, separated by \";\" (default: all)")
    a = ap.parse_args()
    result: dict = {"bench": "quality", "load_start": B.loadavg()}
    score_start, end = dt.date.fromisoformat(a.score_start), dt.date.fromisoformat(a.end)
    cache = Path(tempfile.gettempdir()) / "ml_assets_ablation_features.parquet"
    if a.ablation or a.recipes:
        if a.ablation:
            result.update(ablation=ablation(a.step, score_start, end, cache), step=a.step)
        else:
            names = [n.strip() for n in a.variants.split(";")] if a.variants else None
            result.update(recipes=recipes(a.step, score_start, end, cache, names), step=a.step)
        result["load_end"] = B.loadavg()
        print(json.dumps(result))
        return
    if a.tuning:
        result.update(tuning=tuning_value(Path(a.source), max(1, min(a.step, 6))), source=a.source)
        result["load_end"] = B.loadavg()
        print(json.dumps(result))
        return
    if a.source:
        base = Path(a.source)
    else:
        base = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="bench-quality-"))
        env = B.fresh_env(base, a.families, None)
        land, code, _, _ = B.timed([str(B.BIN / "ml-assets"), "land", "--start", a.start, "--end", a.end], env,
                                   base / "land.log")
        assert code == 0, (base / "land.log").read_text()[-2000:]
        seconds, code, text, peak = B.timed([str(B.BIN / "ml-assets"), "backfill", "--start", a.start, "--end",
                                             a.end, "--assets", "all", "--wait"], env, base / "backfill.log")
        result.update(replay=f"ml-assets backfill --start {a.start} --end {a.end} --assets all --wait",
                      families=a.families, land_seconds=round(land, 1), backfill_seconds=round(seconds, 1),
                      backfill_exit_code=code, backfill_peak_rss_gib=peak,
                      summary=next((line for line in text.splitlines() if line.startswith("days:")), ""))
    plain_csv = base / "plain_per_day.csv"
    if not plain_csv.exists():
        plain = B.baseline(a.score_start, a.end, None, plain_csv)
        result.update(plain_seconds=plain["seconds"])
    plain = pl.read_csv(plain_csv, try_parse_dates=True).select("date", "auc")
    deployed = deployed_per_day(base / "home", "flights", score_start, end)
    deployed.write_csv(base / "deployed_per_day.csv")
    result.update(home=str(base), deployed_days=deployed.height,
                  champion_vs_plain=paired(deployed, plain, "champion", "plain"),
                  models_in_effect=deployed["model"].n_unique())
    result["load_end"] = B.loadavg()
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
