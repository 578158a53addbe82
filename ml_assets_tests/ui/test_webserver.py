"""The Dagster UI as a person sees it: dagster-webserver over a populated instance, driven by headless Chromium.

Three real days are landed and the data layer materialized into a temp DAGSTER_HOME (the repo's dagster.yaml)
and a temp ML_ASSETS_HOME; then ``dagster-webserver -w workspace.yaml`` serves them on 127.0.0.1 and Debian's
Chromium (``make chromium`` installs it; ``make test`` depends on it) opens the catalog, the lineage, an asset's
partitions and its checks. Every test leaves a screenshot in its tmp dir.
"""
from __future__ import annotations

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

import dagster as dg
import pytest
from playwright.sync_api import Page, expect, sync_playwright

from ml_assets.core.landing import land_days
from ml_assets.core.storage import make_path
from ml_assets.definitions import DATA_ASSETS, build_definitions
from ml_assets_tests.processes import free_port, stop_process_group, tail

CHROMIUM = "/usr/bin/chromium"
if not os.access(CHROMIUM, os.X_OK):
    pytest.skip("chromium not installed: run make chromium", allow_module_level=True)

pytestmark = pytest.mark.timeout(240)

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
FIRST = dt.date(2013, 1, 1)
DAYS = [(FIRST + dt.timedelta(days=i)).isoformat() for i in range(3)]
DAY = "2013-01-02"
ALL_ASSETS = ("raw_flights", "raw_weather", "planes", "flight_features", "data_profile",
              "training_set", "xgboost_model", "torch_model", "model_evaluation", "onnx_model")
RAW_FLIGHTS_CHECKS = ("schema", "unique_key", "non_empty", "date_matches_partition")
UI_WAIT_MS = 30_000
# what the UI shows when the code location or a query fails (its own wording)
UI_ERRORS = re.compile(r"error loading|failed to load|error occurred|unexpected graphql error|pythonerror", re.I)
expect.set_options(timeout=UI_WAIT_MS)  # the React app renders after its GraphQL queries answer
LOCATION_QUERY = """{ workspaceOrError { __typename ... on PythonError { message }
  ... on Workspace { locationEntries { name loadStatus
    locationOrLoadError { __typename ... on PythonError { message } } } } } }"""


def _get(url: str, data: bytes | None = None) -> bytes:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return resp.read()


def _locations(url: str) -> list[dict]:
    body = json.loads(_get(f"{url}/graphql", json.dumps({"query": LOCATION_QUERY}).encode()))
    ws = body["data"]["workspaceOrError"]
    assert ws["__typename"] == "Workspace", ws
    return ws["locationEntries"]


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    """A fresh Dagster instance (the repo's dagster.yaml) and a storage root with three landed days."""
    base = tmp_path_factory.mktemp("ui")
    dagster_home, ml_home = base / "dagster_home", base / "ml_assets_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    land_days(make_path(str(ml_home)), FIRST, FIRST + dt.timedelta(days=len(DAYS) - 1))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(dagster_home))
        with dg.DagsterInstance.get():  # creates the SQLite storage before the webserver opens it
            pass
    return dagster_home, ml_home


@pytest.fixture(scope="module")
def webserver_process(homes, tmp_path_factory):
    """``dagster-webserver`` on a free loopback port serving the repo's workspace over ``homes`` (booting)."""
    dagster_home, ml_home = homes
    port = free_port()
    log = tmp_path_factory.mktemp("webserver") / "webserver.log"
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "ML_ASSETS_HOME": str(ml_home), "ML_ASSETS_ENV": "local"}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(VENV_BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
             "-w", str(REPO / "workspace.yaml")],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        # the webserver and the code server it spawned share the session we started
        stop_process_group(proc, grace_seconds=15)


@pytest.fixture(scope="module")
def materialized(homes):
    """The data layer materialized for the three days, recorded in the instance the webserver reads."""
    dagster_home, ml_home = homes
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DAGSTER_HOME", str(dagster_home))
        mp.setenv("ML_ASSETS_HOME", str(ml_home))
        mp.setenv("ML_ASSETS_ENV", "local")
        resources = build_definitions(home=str(ml_home), env="local").resources
        with dg.DagsterInstance.get() as instance:
            for day in DAYS:
                result = dg.materialize(DATA_ASSETS, partition_key=day, resources=resources, instance=instance,
                                        raise_on_error=False)
                assert result.success, f"the data layer failed for {day}"


@pytest.fixture(scope="module")
def webserver(webserver_process, materialized):
    """The webserver, up with its code location loaded, over the materialized instance.

    It boots while the data layer materializes (the order of the arguments above): the UI reads the
    instance live, as it does under ``dagster dev``.
    """
    proc, url, log = webserver_process
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"dagster-webserver exited with {proc.returncode}:\n{tail(log)}")
        if time.monotonic() > deadline:
            pytest.fail(f"dagster-webserver did not load the code location within 90 s:\n{tail(log)}")
        try:
            json.loads(_get(f"{url}/server_info"))
            entries = _locations(url)
        except (OSError, ValueError):  # not listening yet, or answering before the app is up
            entries = []
        if entries and all(e["loadStatus"] == "LOADED" for e in entries):
            failed = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
            if failed:  # every UI test would only time out: say why once
                pytest.fail(f"the code location failed to load: {failed}\n{tail(log)}")
            return url, log
        time.sleep(0.3)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def context(browser, webserver):
    """One browser profile for the module, so the UI's scripts are fetched once."""
    url, _ = webserver
    ctx = browser.new_context(base_url=url, viewport={"width": 1400, "height": 900})
    # dismiss the "Join the Dagster community" dialog the UI shows once on localhost (it is kept in localStorage)
    ctx.add_init_script("window.localStorage.setItem('communityNux', JSON.stringify('1'))")
    try:
        yield ctx
    finally:
        ctx.close()


@pytest.fixture
def page(context, tmp_path, request):
    pg = context.new_page()
    pg.set_default_timeout(UI_WAIT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    try:
        yield pg
    finally:
        shot = tmp_path / f"{request.node.name}.png"
        pg.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        pg.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def _asset_link(page: Page, key: str):
    return page.locator(f'a[href="/assets/{key}"]').first


def _no_error_banner(page: Page) -> None:
    body = page.inner_text("body")
    assert not UI_ERRORS.search(body), body[:3000]


def test_code_location_is_loaded_without_error(webserver, page):
    url, log = webserver
    entries = _locations(url)
    assert [(e["name"], e["loadStatus"], e["locationOrLoadError"]["__typename"]) for e in entries] == [
        ("ml_assets.definitions:defs", "LOADED", "RepositoryLocation")], f"{entries}\n{tail(log)}"
    page.goto("/locations")
    expect(page.get_by_text("1 code location")).to_be_visible()
    expect(page.locator('a[href^="/locations/ml_assets.definitions%3Adefs"]').first).to_be_visible()
    expect(page.get_by_text("Loaded", exact=True)).to_be_visible()
    expect(page.get_by_text("Failed", exact=True)).to_have_count(0)
    _no_error_banner(page)


def test_catalog_lists_every_asset(page):
    page.goto("/assets")
    for key in ALL_ASSETS:
        expect(_asset_link(page, key)).to_be_visible()
    expect(page.get_by_text("365 partitions").first).to_be_visible()
    _no_error_banner(page)


def test_lineage_shows_both_asset_groups(page):
    page.goto("/asset-groups")
    expect(page.get_by_text("Global asset lineage")).to_be_visible()
    for group in ("data", "models"):
        expect(page.get_by_text(group, exact=True).first).to_be_visible()
    _no_error_banner(page)


def test_partition_shows_its_materialization_and_metadata(page):
    # as a person would: catalog -> asset -> Partitions tab -> filter to the day -> its metadata
    page.goto("/assets")
    _asset_link(page, "flight_features").click()
    page.get_by_role("tab", name="Partitions").click()
    expect(page.get_by_text(f"Materialized ({len(DAYS)})")).to_be_visible()
    page.get_by_placeholder("Filter by name").fill(DAY)
    page.get_by_text(DAY, exact=True).filter(visible=True).first.click()
    expect(page).to_have_url(re.compile(rf"[?&]partition={DAY}\b"))
    detail = page.get_by_role("table").filter(has_text="dagster/row_count")
    expect(detail).to_contain_text("943")  # the flights landed on 2013-01-02
    for name in ("labelled_rows", "late_share", "feature_code_version", "dagster/column_schema"):
        expect(detail).to_contain_text(name)
    expect(detail).to_contain_text(f"flight_features/{DAY}.parquet")
    _no_error_banner(page)


def test_checks_tab_names_the_blocking_checks(page):
    page.goto("/assets")
    _asset_link(page, "raw_flights").click()
    page.get_by_role("tab", name="Checks").click()
    expect(page.get_by_text(f"Checks ({len(RAW_FLIGHTS_CHECKS)})")).to_be_visible()
    for name in RAW_FLIGHTS_CHECKS:
        expect(page.get_by_text(name, exact=True).first).to_be_visible()
    expect(page.get_by_text("Succeeded")).to_have_count(len(RAW_FLIGHTS_CHECKS))
    expect(page.get_by_text("This is a blocking asset check.")).to_be_visible()
    _no_error_banner(page)
