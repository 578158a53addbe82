"""MLflowTracking on a fresh local SQLite store."""
import subprocess
import sys

LOG_ONE_RUN = """
import sys
from ml_assets.resources.tracking import MLflowTracking
run_id, _ = MLflowTracking(tracking_uri=sys.argv[1]).log_run("r", {"a": 1}, {"m": 0.5}, {"t": "x"})
print(run_id)
"""


def test_steps_that_open_a_fresh_store_at_once_all_log_their_run(tmp_path):
    """Concurrent first use (several training steps of one run under the daemon) must not race MLflow's
    schema migration or the experiment's creation."""
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    procs = [subprocess.Popen([sys.executable, "-c", LOG_ONE_RUN, uri], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]
    assert [code for code, _, _ in results] == [0] * 2, [err[-2000:] for _, _, err in results]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ml_assets")
    logged = {r.info.run_id for r in client.search_runs([experiment.experiment_id])}
    assert logged == {out.strip() for _, out, _ in results}
