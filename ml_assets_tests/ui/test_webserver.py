"""The Dagster UI and the model server's docs as a person sees them, driven by headless Chromium.

A copy of the session's materialized pipeline (10 days, the whole graph) gets the evening delivery of 2013-01-11
(its schedule and weather, ``land_as_of``) and ``ml-assets catchup`` carries it on with the in-process ticker,
as ``make demo`` does. Then ``dagster dev`` (webserver + daemon, the repo's workspace.yaml and dagster.yaml)
serves that instance on 127.0.0.1, and ``ml-assets serve`` serves the champion of the same copy. Debian's
Chromium (``make chromium``) driven by Playwright checks: the code location loads; the catalog; the lineage
with the landing assets upstream of the raw ones; a partition's metadata with a native table (not markdown);
a blocking check; the champion's ``promotion`` check and its comparisons; the ticker's run attributed to the
``flights_automation`` sensor in the Runs list; and the model server's ``/docs`` rendered with every
non-loopback request aborted. Every test leaves a screenshot in its tmp dir.

The daemon's sensors tick once at start (ML_ASSETS_SENSOR_INTERVAL_SECONDS=3600) and the retrain sensor is
stopped (``dagster sensor stop``): on its first tick it would start a retrain from the pipeline's historical
failed drift checks, minutes of CPU the two cores need for the browser.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from ml_assets.core import landing as L
from ml_assets.core.spec import load_spec
from ml_assets.core.storage import make_path
from ml_assets_tests.conftest import FAST_FAMILIES, Pipeline
from ml_assets_tests.processes import free_port, stop_process_group, tail

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
if not os.access(CHROMIUM, os.X_OK):
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes", "on"):
        raise RuntimeError(f"{CHROMIUM} is not installed (run make chromium): CI must not skip the UI tests")
    pytest.skip("chromium not installed: run make chromium", allow_module_level=True)

pytestmark = [pytest.mark.timeout(300), pytest.mark.cost(55)]

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
EVENING = dt.datetime(2013, 1, 10, 18, 0)  # the schedule and weather of 2013-01-11 are delivered
NEW_DAY = "2013-01-11"
DAY = "2013-01-10"  # the newest day with outcomes: evaluated, decided
SENSOR = "flights_automation"
UI_WAIT_MS = 30_000
# what the UI shows when the code location or a query fails (its own wording)
UI_ERRORS = re.compile(r"error loading|failed to load|error occurred|unexpected graphql error|pythonerror", re.I)
expect.set_options(timeout=UI_WAIT_MS)  # the React app renders after its GraphQL queries answer
LOCATION_QUERY = """{ workspaceOrError { __typename ... on PythonError { message }
  ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _get(url: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read()


def _locations(url: str) -> list[dict]:
    body = json.loads(_get(f"{url}/graphql", json.dumps({"query": LOCATION_QUERY}).encode()))
    ws = body["data"]["workspaceOrError"]
    assert ws["__typename"] == "Workspace", ws
    return ws["locationEntries"]


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(args, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _finish(proc: subprocess.Popen, log: Path, what: str, timeout: float = 180) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_process_group(proc)
        pytest.fail(f"{what} did not finish within {timeout:.0f} s:\n{tail(log)}")
    assert proc.returncode == 0, f"{what} exited with {proc.returncode}:\n{tail(log)}"
    return log.read_text(errors="replace")


def _wait_for(proc: subprocess.Popen, log: Path, what: str, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with {proc.returncode}:\n{tail(log)}")
        try:
            if ready():
                return
        except (OSError, ValueError):  # not listening yet, or answering before the app is up
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} was not up within {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.3)


def _tree(folder: str) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in Path(folder).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def stack(pipeline, tmp_path_factory):
    """The pipeline copy after an evening and a catchup, served by ``dagster dev`` and ``ml-assets serve``."""
    base = tmp_path_factory.mktemp("ui")
    copy = Pipeline(str(base / "home"), str(base / "dagster"), pipeline.first, pipeline.last)
    shutil.copytree(pipeline.home, copy.home)
    shutil.copytree(pipeline.dagster_home, copy.dagster_home)
    shutil.copy(REPO / "dagster.yaml", Path(copy.dagster_home) / "dagster.yaml")  # as `make ui` runs it
    # the pipeline's own settings (it inherits this environment too), pointed at the copy
    env = dict(os.environ)
    env.update(ML_ASSETS_HOME=copy.home, DAGSTER_HOME=copy.dagster_home, ML_ASSETS_FAMILIES=FAST_FAMILIES,
               ML_ASSETS_ENV="local", ML_ASSETS_SENSOR_INTERVAL_SECONDS="3600", PYTHONUNBUFFERED="1",
               PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               # a tracking store of the copy's own: the copied one names the pipeline's artifact folder (MLflow
               # keeps absolute locations), and the session's pipeline must not be written to
               MLFLOW_TRACKING_URI=f"sqlite:///{base / 'home' / 'mlflow' / 'ui.db'}")
    untouched = _tree(pipeline.home)
    landed = [f for f in L.land_as_of(make_path(copy.home), load_spec("nycflights13"), EVENING) if f.written]
    assert sorted((f.source, str(f.day)) for f in landed) == [("schedule", NEW_DAY), ("weather", NEW_DAY)]

    procs: list[subprocess.Popen] = []
    started = time.monotonic()
    try:
        serve_port, ui_port = free_port(), free_port()
        serve_log = base / "serve.log"
        serve = _start([str(VENV_BIN / "ml-assets"), "serve", "--port", str(serve_port)], env, serve_log)
        procs.append(serve)
        catchup_log, stop_log = base / "catchup.log", base / "sensor-stop.log"
        catchup = _start([str(VENV_BIN / "ml-assets"), "catchup"], env, catchup_log)
        procs.append(catchup)
        stop = _start([str(VENV_BIN / "dagster"), "sensor", "stop", "flights_retrain_on_degradation",
                       "-w", str(REPO / "workspace.yaml")], env, stop_log)
        procs.append(stop)
        said = _finish(catchup, catchup_log, "ml-assets catchup")
        assert re.search(r"catchup: [1-9]\d* run\(s\) in \d+ s, 0 failed", said), said
        assert NEW_DAY in said, said
        _finish(stop, stop_log, "dagster sensor stop")
        caught_up = time.monotonic()
        assert _tree(pipeline.home) == untouched, "the catchup on the copy wrote into the session's pipeline"

        ui_log = base / "dagster-dev.log"
        ui = _start([str(VENV_BIN / "dagster"), "dev", "-w", str(REPO / "workspace.yaml"), "-h", "127.0.0.1",
                     "-p", str(ui_port)], env, ui_log)
        procs.append(ui)
        serve_url, ui_url = f"http://127.0.0.1:{serve_port}", f"http://127.0.0.1:{ui_port}"
        _wait_for(serve, serve_log, "ml-assets serve",
                  lambda: json.loads(_get(f"{serve_url}/health"))["status"] == "ok")

        def loaded() -> bool:
            entries = _locations(ui_url)
            if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                failed = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                if failed:  # every UI test would only time out: say why once
                    pytest.fail(f"the code location failed to load: {failed}\n{tail(ui_log)}")
                return True
            return False

        _wait_for(ui, ui_log, "dagster dev", loaded)
        print(f"catchup (serve booting meanwhile) {caught_up - started:.0f} s, "
              f"dagster dev up {time.monotonic() - caught_up:.0f} s")
        yield {"ui": ui_url, "ui_log": ui_log, "serve": serve_url, "pipeline": copy, "env": env}
    finally:
        for proc in reversed(procs):
            # dagster dev: the webserver, the daemon and the code server share the session we started
            stop_process_group(proc, grace_seconds=15)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def context(browser, stack):
    """One browser profile for the UI tests, so the UI's scripts are fetched once."""
    ctx = browser.new_context(base_url=stack["ui"], viewport={"width": 1400, "height": 900})
    # dismiss the "Join the Dagster community" dialog the UI shows once on localhost (it is kept in localStorage)
    ctx.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
    try:
        yield ctx
    finally:
        ctx.close()


def _screenshot_on_close(pg: Page, tmp_path: Path, request) -> None:
    shot = tmp_path / f"{request.node.name}.png"
    pg.screenshot(path=str(shot), full_page=True)
    print(f"screenshot: {shot}")


@pytest.fixture
def page(context, tmp_path, request):
    pg = context.new_page()
    pg.set_default_timeout(UI_WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
    finally:
        _screenshot_on_close(pg, tmp_path, request)
        pg.close()
    assert not errors, f"uncaught errors in the page: {errors}"


@contextlib.contextmanager
def _instance(stack):
    """The copy's instance, as the UI reads it (dagster.yaml names its storage folder by $DAGSTER_HOME)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", stack["pipeline"].dagster_home)
        with stack["pipeline"].instance() as instance:
            yield instance


def _asset_link(page: Page, key: str):
    return page.locator(f'a[href="/assets/{key}"]').first


def _no_error_banner(page: Page) -> None:
    body = page.inner_text("body")
    assert not UI_ERRORS.search(body), body[:3000]


def _metadata_table(page: Page, entry: str):
    """The native table (TableMetadataValue) the UI renders for metadata entry ``entry``."""
    row = page.locator("tr").filter(has=page.locator("xpath=./td[1]").get_by_text(entry, exact=True)).last
    return row, row.locator("table")


def test_code_location_is_loaded_and_the_daemon_runs(stack, page):
    entries = _locations(stack["ui"])
    assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
        ("ml_assets.definitions:defs", "LOADED", "RepositoryLocation")], f"{entries}\n{tail(stack['ui_log'])}"
    page.goto("/locations")
    expect(page.get_by_text("1 code location")).to_be_visible()
    expect(page.get_by_text("Loaded", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
    page.goto("/deployment/daemons")
    for daemon in ("Sensors", "Run queue", "Backfill"):
        expect(page.get_by_text(daemon, exact=True).first).to_be_visible()
    expect(page.get_by_text("Running", exact=True).first).to_be_visible()
    expect(page.get_by_text("Not running", exact=True)).to_have_count(0)
    _no_error_banner(page)


def test_catalog_lists_every_asset_under_the_dataset_prefix(page):
    page.set_viewport_size({"width": 1400, "height": 2000})  # the table renders the rows in view only
    page.goto("/assets/flights")
    for name in ("landing_schedule", "landing_weather", "landing_outcomes", "raw_schedule", "features",
                 "xgboost_model", "logistic_model", "model_evaluation", "champion", "batch_predictions",
                 "live_performance"):
        expect(_asset_link(page, f"flights/{name}")).to_be_visible()
    expect(page.get_by_text("365 partitions").first).to_be_visible()
    _no_error_banner(page)


@pytest.mark.parametrize("source", ["schedule", "weather", "outcomes"])
def test_the_lineage_shows_each_landing_asset_upstream_of_its_raw_asset(page, source):
    # the raw asset's own lineage, upstream only, one level: exactly what feeds it
    page.goto(f"/assets/flights/raw_{source}?view=lineage&lineageScope=upstream&lineageDepth=1")
    graph = page.locator("svg").filter(has=page.get_by_text(f"raw_{source}", exact=True))
    expect(graph.get_by_text(f"landing_{source}", exact=True)).to_be_visible()
    expect(graph.get_by_text("landing", exact=True)).to_be_visible()  # its group box
    expect(graph.get_by_text("features", exact=True)).to_have_count(0)  # nothing downstream in this view
    landing = graph.get_by_text(f"landing_{source}", exact=True).bounding_box()
    raw = graph.get_by_text(f"raw_{source}", exact=True).bounding_box()
    assert landing["x"] + landing["width"] <= raw["x"], (landing, raw)  # drawn left of (upstream of) it
    _no_error_banner(page)


def test_a_partition_shows_its_metadata_with_a_native_table(page):
    # as a person would: catalog -> asset -> Partitions tab -> filter to the day -> its metadata
    page.goto("/assets/flights")
    _asset_link(page, "flights/model_evaluation").click()
    page.get_by_role("tab", name="Partitions").click()
    page.get_by_placeholder("Filter by name").fill(DAY)
    page.get_by_text(DAY, exact=True).filter(visible=True).first.click()
    expect(page).to_have_url(re.compile(rf"[?&]partition={DAY}\b"))
    row, table = _metadata_table(page, "comparison")
    expect(table).to_have_count(1)  # a real <table>, not a markdown entry behind "[Show Markdown]"
    expect(row.get_by_text("[Show Markdown]")).to_have_count(0)
    headers = table.locator("thead th").all_inner_texts()
    assert {"candidate", "roc_auc", "auc_ci_low", "auc_ci_high", "status"} <= set(headers), headers
    candidates = table.locator("tbody tr td:first-child").all_inner_texts()
    assert {"xgboost", "logistic"} <= set(candidates), candidates
    expect(page.get_by_text("content_hash", exact=True)).to_be_visible()  # the day's own version (a range run)
    # the report, by contrast, is markdown
    report_row, report_table = _metadata_table(page, "report")
    expect(report_row.get_by_text("[Show Markdown]")).to_be_visible()
    _no_error_banner(page)


def test_the_checks_tab_names_the_refusing_checks(page):
    page.goto("/assets/flights/raw_weather?view=checks")
    expect(page.get_by_text("Checks (2)")).to_be_visible()
    for name in ("contract", "unique_key"):
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    page.get_by_text("contract", exact=True).first.click()
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()  # declared refusing
    _no_error_banner(page)


def test_the_champion_promotion_check_shows_its_comparisons(stack, page):
    with _instance(stack) as instance:
        decided = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["flights", "champion"]), asset_partitions=[DAY]), limit=1).records[0]
        reason = decided.asset_materialization.metadata["reason"].value
    page.goto("/assets/flights/champion?view=checks")
    page.get_by_text("promotion", exact=True).first.click()
    expect(page).to_have_url(re.compile(r"checkDetail=promotion"))
    expect(page.get_by_text("Latest execution")).to_be_visible()
    expect(page.get_by_text(DAY, exact=True).first).to_be_visible()  # evaluated on its own day
    expect(page.get_by_text(reason, exact=True).first).to_be_visible()
    row, table = _metadata_table(page, "comparisons")
    expect(table).to_have_count(1)
    headers = table.locator("thead th").all_inner_texts()
    assert {"check", "against", "passed", "rule", "p_worse"} <= set(headers), headers
    checks = table.locator("tbody tr td:first-child").all_inner_texts()
    assert {"onnx_parity", "latency", "size"} <= set(checks), checks
    if "keep" in reason or "promoted over" in reason:  # a decision against a champion compares AUCs
        assert "auc" in checks, checks
    _no_error_banner(page)


def test_the_tickers_run_is_attributed_to_the_automation_sensor(stack, page):
    with _instance(stack) as instance:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/sensor_name": SENSOR}))
    ticked = [r for r in runs if r.tags.get("dagster/partition") == NEW_DAY
              or r.tags.get("dagster/asset_partition_range_end") == NEW_DAY]
    assert ticked, [r.tags for r in runs]
    run = ticked[0]
    assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags.get("dagster/from_automation_condition") == "true"
    page.goto("/runs")
    link = page.locator(f'a[href="/runs/{run.run_id}"]').first
    expect(link).to_be_visible()
    # the innermost block holding the run's link and the sensor's name: the run's row, "Launched by" the sensor
    row = page.locator("div").filter(has=link).filter(has=page.get_by_text(SENSOR, exact=True)).last
    expect(row).to_contain_text(run.run_id[:8])
    expect(row.get_by_role("img", name="sensors")).to_be_visible()
    expect(row).to_contain_text("Success")
    other = [r.run_id[:8] for r in instance_runs(stack) if r.run_id != run.run_id]
    row_text = row.inner_text()
    assert not any(o in row_text for o in other), row_text  # one row, not the table
    _no_error_banner(page)


def instance_runs(stack) -> list:
    with _instance(stack) as instance:
        return list(instance.get_runs(limit=50))


def test_the_model_servers_docs_render_with_the_network_off(stack, browser, tmp_path, request):
    """Swagger UI's and ReDoc's scripts and styles are served by the model server itself: with every non-loopback
    request aborted (Chromium's offline emulation would block loopback too), the pages still render the API and
    attempt nothing outside."""
    ctx = browser.new_context(viewport={"width": 1200, "height": 900})
    attempted: list[str] = []

    def only_loopback(route):
        if urlsplit(route.request.url).hostname in LOOPBACK:
            route.continue_()
        else:
            attempted.append(route.request.url)
            route.abort("internetdisconnected")

    ctx.route("**/*", only_loopback)
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        pg.goto(f"{stack['serve']}/docs")
        expect(pg.locator(".swagger-ui .info .title")).to_contain_text("p_late", timeout=UI_WAIT_MS)
        operations = pg.locator(".opblock")
        expect(operations.filter(has_text="/predict")).to_have_count(1, timeout=UI_WAIT_MS)
        texts = operations.all_inner_texts()
        assert any(t.startswith("POST\n/predict") for t in texts), texts
        assert any("/health" in t for t in texts) and any("/model" in t for t in texts), texts
        operations.filter(has_text="/predict").first.click()  # the request schema derived from the spec
        expect(pg.get_by_text("Request body").first).to_be_visible(timeout=UI_WAIT_MS)
        example = operations.filter(has_text="/predict").first.locator("pre").first  # the request example
        for field in ("sched_dep_time", "carrier", "origin", "weather"):
            expect(example).to_contain_text(f'"{field}"', timeout=UI_WAIT_MS)
        assert attempted == [], f"/docs tried to reach the network: {attempted}"
        # ReDoc too: its bundle links a logo on a CDN, which the server's same-origin policy keeps it from fetching
        pg.goto(f"{stack['serve']}/redoc")
        expect(pg.locator("h1").first).to_contain_text("p_late", timeout=UI_WAIT_MS)
        expect(pg.get_by_text("/predict").first).to_be_visible(timeout=UI_WAIT_MS)
        assert attempted == [], f"/redoc tried to reach the network: {attempted}"
        assert not errors, errors
    finally:
        _screenshot_on_close(pg, tmp_path, request)
        ctx.close()
