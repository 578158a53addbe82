"""Model layer: training_set -> <family>_params (a scheduled search, tunable families) -> one candidate per family
-> model_evaluation (sanity, choice) -> onnx_model (parity)."""

from ml_assets.defs.blueprint import Blueprint


def build(bp: Blueprint) -> list:
    from ml_assets.defs.models import candidates, evaluation, onnx, params, training_set

    return [*training_set.build(bp), *params.build(bp), *candidates.build(bp), *evaluation.build(bp),
            *onnx.build(bp)]
