"""champion: after day D's decision, which bundle serves; a daily chain (each day builds on the day before).

The candidate of day D (its bundle) is judged against the champion in effect on D's labelled rows, which neither
trained on, by ``core.decisions.promotion``; the result, with every paired comparison and its interval, is the
day's ``promotion`` check. A refused candidate leaves the champion in place; a refused or missing day (no
candidate) carries the champion forward. A rollback is a materialization of the newest day with
``rollback: true`` in the run config (``ml-assets rollback``). The MLflow alias ``champion`` follows the newest day.
"""

import dagster as dg
import polars as pl
from pydantic import Field

from ml_assets.core import bundle as B
from ml_assets.core import champion as C
from ml_assets.core import decisions
from ml_assets.defs.blueprint import DEPLOYMENT, Blueprint, day_offset, window
from ml_assets.defs.days import DayResult, Days, Refused, day_check_spec, emit_days
from ml_assets.defs.metadata import table
from ml_assets.defs.models.evaluation import holdout
from ml_assets.resources.storage import StorageRoot
from ml_assets.resources.tracking import MLflowTracking

PROMOTION = "promotion"
FRESHNESS = "champion_freshness"
MAX_LAG_DAYS = 1


class PromotionSettings(dg.ConfigurableResource):
    alpha: float = Field(0.05, description="one-sided significance of every 'not worse' comparison")
    evidence_days: int = Field(7, description="days of the family's track record pooled")
    reference_days: int = Field(14, description="champions in effect within this many days are references")
    slice_drop: float = Field(0.10, description="the slice AUC drop the slice tests have 80% power to detect")
    max_single_row_p95_ms: float = Field(50.0, description="latency budget")
    max_size_bytes: int = Field(50_000_000, description="model size budget")

    def policy(self) -> decisions.PromotionPolicy:
        return decisions.PromotionPolicy(alpha=self.alpha, evidence_days=self.evidence_days,
                                         reference_days=self.reference_days, slice_drop=self.slice_drop,
                                         max_single_row_p95_ms=self.max_single_row_p95_ms,
                                         max_size_bytes=self.max_size_bytes)


class ChampionConfig(dg.Config):
    rollback: bool = Field(False, description="roll the newest day's champion back (ml-assets rollback)")
    to_version: str | None = Field(None, description="roll back to this earlier champion version")
    line: str | None = Field(None, description="model line of to_version")
    reason: str = "manual rollback (ml-assets rollback)"


def _rollback(state: dict, day: str, config: ChampionConfig) -> dict:
    target, parent = C.rollback_target(state, config.line, config.to_version)
    return C.next_state(state, day, action="rollback", reason=config.reason, champion=target, parent=parent)


def decide_day(bp: Blueprint, state: dict, day: str, bundle, evaluation, labelled, bundles: B.LoadedBundles,
               policy: decisions.PromotionPolicy) -> tuple[dict, dict | None]:
    """(the day's state, the decision's table or None when there was no candidate)."""
    if day < bp.first_model_day:
        return C.next_state(state, day, action="none", reason="no model on the feed's first day: nothing to learn "
                            "from yet", keep_days=policy.reference_days), None
    for value in (labelled, evaluation, bundle):
        if isinstance(value, Refused):
            return C.next_state(state, day, action="keep" if state["champion"] else "none",
                                reason=f"no candidate: {value.reason}", keep_days=policy.reference_days), None
    rows = holdout(bp, labelled)
    y = rows[bp.spec.label.name].cast(pl.Float64).to_numpy()
    p_candidate = bundles.scores(bundle, rows)
    champion = state["champion"]
    p_champion = bundles.scores(champion, rows) if champion else None
    evidence = {}
    if p_champion is not None:
        for column in [c for c in evaluation.columns if c.startswith("p_") and c != "p_baseline"]:
            record = decisions.day_evidence(y, evaluation[column].to_numpy(), p_champion)
            if record is not None:
                evidence[column[2:]] = record
    references = {C.name(s): bundles.scores(s, rows) for s in state["served"]
                  if champion is None or (s["model_line"], s["version"]) != (champion["model_line"], champion["version"])}
    if p_champion is not None:
        references[C.name(champion)] = p_champion
    family = bundle["family"]
    track = [*state["evidence"].get(family, []), *([{"day": day, **evidence[family]}] if family in evidence else [])]
    slices = {s.name: rows.select(pl.sql_expr(s.expression).cast(pl.String)).to_series().to_numpy()
              for s in bp.spec.slices}
    decision = decisions.promotion(
        y, p_candidate, champion=p_champion, champion_name=C.name(champion), references=references,
        evidence=track if p_champion is not None else [], slices=slices, parity_passed=bundle["parity_passed"],
        latency_p95_ms=bundle["single_row_p95_ms"], size_bytes=bundle["size_bytes"], policy=policy)
    candidate = C.name(bundle)
    if decision.promote:
        new = C.next_state(state, day, action="promote", champion=bundle, evidence=evidence, decision=decision.rows,
                           reason=f"{candidate} promoted over {C.name(champion)}: {decision.reason}",
                           keep_days=policy.reference_days)
    else:
        new = C.next_state(state, day, action="keep", evidence=evidence, decision=decision.rows,
                           reason=f"{candidate} not promoted, {C.name(champion)} stays: {decision.reason}",
                           keep_days=policy.reference_days)
    return new, {"decision": decision, "candidate": candidate}


def _checks(state: dict, day: str, decided: dict | None, policy: decisions.PromotionPolicy) -> list:
    checks = []
    if decided is not None:
        d = decided["decision"]
        checks.append(dg.AssetCheckResult(
            check_name=PROMOTION, passed=d.promote, severity=dg.AssetCheckSeverity.WARN, description=state["reason"],
            metadata={"decision": "promote" if d.promote else "keep the champion", "candidate": decided["candidate"],
                      "champion": C.name(state["champion"]), "reason": state["reason"],
                      "comparisons": table(pl.DataFrame(d.rows, strict=False), 100),
                      "policy": dg.MetadataValue.json(policy.describe())}))
    lag = C.freshness_lag(state, day)
    if lag is not None:
        checks.append(dg.AssetCheckResult(
            check_name=FRESHNESS, passed=lag <= MAX_LAG_DAYS, severity=dg.AssetCheckSeverity.WARN,
            description=f"the champion's training data ends {lag} day(s) before the newest possible",
            metadata={"lag_days": lag, "max_lag_days": MAX_LAG_DAYS,
                      "trained_through": state["champion"]["trained_through"]}))
    return checks


def _metadata(state: dict) -> dict:
    history = pl.DataFrame([{k: e.get(k) for k in ("day", "action", "model_line", "version", "reason")}
                            for e in state["history"][-20:][::-1]]) if state["history"] else None
    p = state["champion"]
    return {"champion": C.name(p), "action": state["action"], "reason": state["reason"],
            "since": state["since"] or "", "trained_through": (p or {}).get("trained_through") or "",
            **({"history": table(history, 20)} if history is not None else {})}


def state_version(value) -> str:
    """A champion state's data version: who serves and why, not the day's measured comparison numbers."""
    from ml_assets.core.versioning import content_hash

    if isinstance(value, dict):
        return content_hash({k: v for k, v in value.items() if k != "decision"})
    return content_hash(value)


def build(bp: Blueprint) -> list:
    key = bp.key("champion")
    kw = {"asset": key, "partitions_def": bp.partitions}

    # A multi-asset of one output only for ``can_subset``: with an asset that depends on its own earlier partitions
    # and carries checks in its step, Dagster 1.13's automation also requests D-1 whenever it requests D (it maps the
    # step's execution set onto the asset through that self-dependency), and with it batch_predictions D+1: one
    # needless decision and prediction step every day, on every path. Subsettable, the execution set is the asset
    # alone; its checks still ride along with it.
    @dg.multi_asset(
        outs={"result": dg.AssetOut(
            key=key, io_manager_key="json_io_manager", group_name=DEPLOYMENT, kinds={"mlflow"},
            code_version="champion-v3", owners=list(bp.owners), tags=bp.tags(layer="deployment"),
            description="Who serves after day D's decision: the day's candidate if it is not significantly worse "
                        "than the champion (below it, than any recent champion; its family's track record; every "
                        "large slice), else the champion stays. A chain over the days.")},
        name=key.to_python_identifier(), partitions_def=bp.partitions, can_subset=True,
        pool=f"{bp.spec.name}_champion",  # one decider at a time (dagster.yaml: pools default_limit 1)
        ins={"previous": dg.AssetIn(key, partition_mapping=window(-1, -1)),
             "bundle": dg.AssetIn(bp.key("deployment_bundle"), input_manager_key="json_io_manager"),
             "evaluation": dg.AssetIn(bp.key("model_evaluation")),
             "labelled": dg.AssetIn(bp.key("labelled_features"))},
        check_specs=[day_check_spec(PROMOTION, description="the day's candidate may replace the champion: "
                                    "paired DeLong tests on the same rows (see the comparisons)", **kw),
                     day_check_spec(FRESHNESS, description=f"the champion's training data ends at most "
                                    f"{MAX_LAG_DAYS} day before the newest possible (warns)", **kw)],
        backfill_policy=dg.BackfillPolicy.single_run())
    def champion(context: dg.AssetExecutionContext, previous: Days, bundle: Days, evaluation: Days, labelled: Days,
                 config: ChampionConfig, storage: StorageRoot, mlflow: MLflowTracking,
                 promotion_settings: PromotionSettings):
        policy = promotion_settings.policy()
        bundles = B.LoadedBundles(storage.path())
        days = context.partition_keys
        before = day_offset(days[0], -1)
        state = previous.get(before) if before >= bp.spec.first_day.isoformat() else None
        if isinstance(state, Refused) or state is None:
            state = C.empty_state()
        results = {}
        for day in days:  # in order: each day's decision starts from the day before
            if config.rollback and day == days[-1]:
                state, decided = _rollback(state, day, config), None
            else:
                state, decided = decide_day(bp, state, day, bundle.day(day), evaluation.day(day), labelled.day(day),
                                            bundles, policy)
            results[day] = DayResult(state, _metadata(state), _checks(state, day, decided, policy))
        newest = max(context.instance.get_materialized_partitions(key) or {days[-1]})
        if state["champion"] is not None and days[-1] >= newest:
            mlflow.set_champion(state["champion"]["model_line"], state["champion"]["version"],
                                [bp.spec.model_line(f) for f in bp.families])
        yield from emit_days(context, results, version_of=state_version)

    return [champion]
