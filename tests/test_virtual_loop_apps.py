"""A whole async app in virtual time: a Starlette app, driven through httpx, on the virtual loop.

The tests here run on the virtual loop through anyio's pytest plugin (the
``anyio_backend`` fixture below); pytest-asyncio, whose loop factories come
from a conftest hook, is shown by running a user's conftest and test with
pytester.  The app's handlers start flows on coflow's asyncio backend, and the
tests wait hours of virtual time in milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("anyio")
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from conftest import INNER_RUN_OPTIONS  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

import coflow  # noqa: E402
from coflow import Ok, run, set_state, wait  # noqa: E402
from coflow.backends.virtual_loop import VirtualEventLoop  # noqa: E402
from coflow.testing import virtual_loop  # noqa: E402

pytestmark = pytest.mark.anyio
pytest_plugins = ["pytester"]


@pytest.fixture
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"loop_factory": virtual_loop})


# --- the app -------------------------------------------------------------------------------------

emails: list[tuple[float, str]] = []


async def send_expiry_email(state: dict[str, Any]) -> Ok:
    await asyncio.sleep(0.25)  # the mail API's latency: a task on the loop, in virtual time
    now = asyncio.get_running_loop().time()
    emails.append((now, state["user"]))
    return Ok({**state, "status": "expired", "emailed_at": now})


@coflow.flow(initial_state={"user": None, "status": "trial", "emailed_at": None})
def trial() -> coflow.FlowGenerator:
    yield wait(1800)  # a half-hour trial
    yield run(send_expiry_email, retries=2)
    yield set_state(lambda s: {**s, "closed": True})


async def start_trial(request: Request) -> JSONResponse:
    user = request.path_params["user"]
    trials = request.app.state.trials
    trials[user] = coflow.start(
        trial, initial_state={**trial.initial_state, "user": user}, backend="asyncio"
    )
    return JSONResponse({"user": user}, status_code=201)


async def show_trial(request: Request) -> JSONResponse:
    runner = request.app.state.trials[request.path_params["user"]]
    return JSONResponse({"state": runner.get_state(), "status": runner.status})


async def quote(request: Request) -> JSONResponse:
    """A handler with its own timeout: the slow upstream is given 5 s."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    delay = float(request.query_params["upstream_delay"])
    try:
        price = await asyncio.wait_for(slow_upstream(delay), timeout=5)
    except asyncio.TimeoutError:
        return JSONResponse({"error": "upstream timed out", "after": loop.time() - began}, 504)
    return JSONResponse({"price": price, "after": loop.time() - began})


async def slow_upstream(delay: float) -> int:
    await asyncio.sleep(delay)
    return 42


def make_app() -> Starlette:
    app = Starlette(
        routes=[
            Route("/trials/{user}", start_trial, methods=["POST"]),
            Route("/trials/{user}", show_trial, methods=["GET"]),
            Route("/quote", quote),
        ]
    )
    app.state.trials = {}
    return app


@pytest.fixture
async def client() -> AsyncIterator[Any]:
    # Checked first: on a real loop, the hour these tests sleep would be a real hour.
    assert isinstance(asyncio.get_running_loop(), VirtualEventLoop)
    emails.clear()
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        yield client


# --- the tests -----------------------------------------------------------------------------------


async def test_a_trial_started_through_the_app_expires_in_an_hour_of_virtual_time(
    client: Any,
) -> None:
    began = time.perf_counter()
    loop = asyncio.get_running_loop()
    start = loop.time()

    assert (await client.post("/trials/ada")).status_code == 201
    during = (await client.get("/trials/ada")).json()
    assert during == {
        "state": {"user": "ada", "status": "trial", "emailed_at": None},
        "status": "running",
    }

    await asyncio.sleep(3600)

    after = (await client.get("/trials/ada")).json()
    expired = {"user": "ada", "status": "expired", "emailed_at": start + 1800.25, "closed": True}
    assert after == {"state": expired, "status": "done"}
    assert emails == [(start + 1800.25, "ada")]
    assert loop.time() == start + 3600
    assert time.perf_counter() - began < 1.0


async def test_flows_started_at_different_times_keep_their_own_deadlines(client: Any) -> None:
    start = asyncio.get_running_loop().time()
    await client.post("/trials/ada")
    await asyncio.sleep(600)
    await client.post("/trials/grace")
    await asyncio.sleep(1500)  # at 2100: ada's trial is over, grace's has 300 s left
    assert emails == [(start + 1800.25, "ada")]
    assert (await client.get("/trials/grace")).json()["state"]["status"] == "trial"
    await asyncio.sleep(301)  # grace's email goes out at 2400.25
    assert emails == [(start + 1800.25, "ada"), (start + 2400.25, "grace")]


async def test_a_handlers_own_timeout_fires_at_the_exact_virtual_time(client: Any) -> None:
    slow = await client.get("/quote", params={"upstream_delay": 30})
    assert (slow.status_code, slow.json()) == (504, {"error": "upstream timed out", "after": 5.0})
    quick = await client.get("/quote", params={"upstream_delay": 1.5})
    assert (quick.status_code, quick.json()) == (200, {"price": 42, "after": 1.5})


async def test_anyios_own_sleeps_and_deadlines_are_virtual_too() -> None:
    import anyio

    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualEventLoop)
    start = loop.time()
    with anyio.move_on_after(90) as scope:
        await anyio.sleep(3600)
    assert scope.cancelled_caught
    assert loop.time() == start + 90
    assert anyio.current_time() == loop.time()


# --- pytest-asyncio: what a user's conftest and test look like -----------------------------------

CONFTEST = """
import coflow.testing


def pytest_asyncio_loop_factories(config, item):
    return {"virtual": coflow.testing.virtual_loop}
"""

TEST_MODULE = """
import asyncio

import pytest

import coflow


@pytest.mark.asyncio
async def test_an_hour_passes_at_once():
    loop = asyncio.get_running_loop()
    assert type(loop).__name__ == "VirtualEventLoop"  # before an hour that would be real
    await asyncio.sleep(3600)
    assert loop.time() == 3600.0


@pytest.mark.asyncio
async def test_a_flow_on_the_asyncio_backend_waits_in_virtual_time():
    assert type(asyncio.get_running_loop()).__name__ == "VirtualEventLoop"

    @coflow.flow(initial_state={"woke_at": None})
    def nap():
        yield coflow.wait(600)
        yield coflow.set_state(lambda s: {"woke_at": asyncio.get_running_loop().time()})

    assert await coflow.start(nap, backend="asyncio").wait() == {"woke_at": 600.0}


@pytest.mark.asyncio
async def test_each_test_gets_a_fresh_clock():
    assert asyncio.get_running_loop().time() == 0.0
"""


@pytest.mark.skipif("not config.pluginmanager.hasplugin('asyncio')")
def test_pytest_asyncio_runs_a_users_tests_on_the_virtual_loop(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\nfilterwarnings = error\n"
    )
    pytester.makepyfile(test_users_app=TEST_MODULE)
    # Only pytest-asyncio among the plugins installed here, as in a user's project using it.
    quiet = ["-p", "no:anyio", "-p", "no:hypothesispytest", "-p", "no:benchmark"]
    result = pytester.runpytest(*INNER_RUN_OPTIONS, *quiet)
    result.assert_outcomes(passed=3)



# --- the same with FastAPI: a flow per book, edits through the API, an hour of virtual time ----


def make_fastapi_app() -> Any:
    fastapi = pytest.importorskip("fastapi")
    app = fastapi.FastAPI()
    books: dict[str, coflow.Runner] = {}

    async def push(state: dict[str, Any]) -> coflow.Update[dict[str, Any]]:
        await asyncio.sleep(0.3)  # the remote API's latency, in virtual time
        pushed_at = asyncio.get_running_loop().time()
        return coflow.Update(
            lambda s: {**s, "dirty": s["dirty"] is True, "pushed": s["pushed"] + [pushed_at]}
        )

    @coflow.flow(initial_state={"dirty": False, "pushed": []})
    def sync_book() -> coflow.FlowGenerator:
        while True:
            yield coflow.wait_until(lambda s: s["dirty"] is True)
            yield coflow.debounce(0.5)
            yield set_state(lambda s: {**s, "dirty": "processing"})
            yield run(push, retries=3, backoff="exponential", base_delay=0.2)

    @app.post("/books/{book}/edits")
    async def edit(book: str) -> dict[str, str]:
        if book not in books:
            books[book] = coflow.start(sync_book, backend="asyncio")
        await books[book].signal(lambda s: {**s, "dirty": True})
        return {"book": book}

    @app.get("/books/{book}")
    async def show(book: str) -> dict[str, Any]:
        return {"state": books[book].get_state()}

    app.state.books = books
    return app


async def test_a_fastapi_app_pushes_each_burst_of_edits_once_in_virtual_time() -> None:
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualEventLoop)
    app = make_fastapi_app()
    began = time.perf_counter()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        start = loop.time()
        for _ in range(3):  # a burst of edits, 0.1 s apart
            assert (await client.post("/books/b-1/edits")).status_code == 200
            await asyncio.sleep(0.1)
        await asyncio.sleep(3600)
        state = (await client.get("/books/b-1")).json()["state"]
    assert state == {"dirty": False, "pushed": [pytest.approx(start + 0.2 + 0.5 + 0.3)]}
    for runner in app.state.books.values():
        runner.stop()
        with pytest.raises(coflow.FlowStopped):
            await runner.wait()
    assert time.perf_counter() - began < 1.0
