"""Single-flight: concurrent identical calls share one computation."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from helium_lc.cache.singleflight import SingleFlight


def wait_until(predicate, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.001)


def test_sequential_calls_each_compute() -> None:
    # Nothing is in flight between calls, so both are leaders.
    sf = SingleFlight()
    assert sf.do("k", lambda: 1) == 1
    assert sf.do("k", lambda: 2) == 2
    assert (sf.num_leaders, sf.num_followers, sf.num_in_flight) == (2, 0, 0)


def test_threads_share_one_computation() -> None:
    # Step 1: a leader starts and blocks on `release`.
    # Step 2: four more threads ask for the same key and become followers.
    # Step 3: release; all five get the very same object and fn ran once.
    sf, release, num_runs = SingleFlight(), threading.Event(), []

    def compute() -> object:
        num_runs.append(1)
        release.wait(5)
        return object()

    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(sf.do, "k", compute)]
        wait_until(lambda: sf.num_in_flight == 1)
        futures += [pool.submit(sf.do, "k", compute) for _ in range(4)]
        wait_until(lambda: sf.num_followers == 4)
        release.set()
        results = [f.result(5) for f in futures]
    assert len(num_runs) == 1
    assert all(r is results[0] for r in results)
    assert (sf.num_leaders, sf.num_followers, sf.num_in_flight) == (1, 4, 0)


def test_different_keys_do_not_merge() -> None:
    sf, release = SingleFlight(), threading.Event()
    with ThreadPoolExecutor(2) as pool:
        fa = pool.submit(sf.do, "a", lambda: release.wait(5) and "A")
        fb = pool.submit(sf.do, "b", lambda: release.wait(5) and "B")
        wait_until(lambda: sf.num_in_flight == 2)
        release.set()
        assert (fa.result(5), fb.result(5)) == ("A", "B")
    assert (sf.num_leaders, sf.num_followers) == (2, 0)


def test_exception_reaches_every_waiter() -> None:
    sf, release = SingleFlight(), threading.Event()

    def boom() -> None:
        release.wait(5)
        raise RuntimeError("engine down")

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(sf.do, "k", boom)]
        wait_until(lambda: sf.num_in_flight == 1)
        futures += [pool.submit(sf.do, "k", boom) for _ in range(2)]
        wait_until(lambda: sf.num_followers == 2)
        release.set()
        for f in futures:
            with pytest.raises(RuntimeError, match="engine down"):
                f.result(5)
    assert sf.num_in_flight == 0


def test_async_callers_share_one_computation() -> None:
    sf, num_runs = SingleFlight(), []

    async def compute() -> str:
        num_runs.append(1)
        await asyncio.sleep(0.02)
        return "v"

    async def main() -> list[str]:
        return await asyncio.gather(*(sf.ado("k", compute) for _ in range(5)))

    assert asyncio.run(main()) == ["v"] * 5
    assert len(num_runs) == 1 and (sf.num_leaders, sf.num_followers) == (1, 4)


def test_cancelled_async_leader_hands_over_to_a_follower() -> None:
    # Step 1: the leader starts computing (slowly). Step 2: a follower joins.
    # Step 3: the leader is cancelled. The follower is not cancelled: it retries, becomes
    # the new leader, and computes the value itself.
    sf, calls = SingleFlight(), []

    async def compute() -> str:
        calls.append(1)
        await asyncio.sleep(0.05 if len(calls) == 1 else 0)
        return f"run{len(calls)}"

    async def main() -> tuple[bool, str]:
        leader = asyncio.create_task(sf.ado("k", compute))
        await asyncio.sleep(0.01)
        follower = asyncio.create_task(sf.ado("k", compute))
        await asyncio.sleep(0.01)
        leader.cancel()
        await asyncio.gather(leader, return_exceptions=True)
        return leader.cancelled(), await asyncio.wait_for(follower, 5)

    assert asyncio.run(main()) == (True, "run2")
    assert (sf.num_leaders, sf.num_followers, sf.num_in_flight) == (2, 1, 0)


def test_cancelled_follower_does_not_disturb_the_leader() -> None:
    sf = SingleFlight()

    async def compute() -> str:
        await asyncio.sleep(0.05)
        return "v"

    async def main() -> tuple[str, bool, str]:
        leader = asyncio.create_task(sf.ado("k", compute))
        await asyncio.sleep(0.01)
        quitter = asyncio.create_task(sf.ado("k", compute))
        stayer = asyncio.create_task(sf.ado("k", compute))
        await asyncio.sleep(0.01)
        quitter.cancel()
        await asyncio.gather(quitter, return_exceptions=True)
        return await leader, quitter.cancelled(), await stayer

    assert asyncio.run(main()) == ("v", True, "v")


def test_interrupted_sync_leader_hands_over() -> None:
    # A BaseException that is not an Exception (like KeyboardInterrupt) counts as cancellation.
    class Interrupt(BaseException):
        pass

    sf, release = SingleFlight(), threading.Event()

    def interrupted() -> str:
        release.wait(5)
        raise Interrupt()

    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(sf.do, "k", interrupted)
        wait_until(lambda: sf.num_in_flight == 1)
        follower = pool.submit(sf.do, "k", lambda: "recomputed")
        wait_until(lambda: sf.num_followers == 1)
        release.set()
        with pytest.raises(Interrupt):
            leader.result(5)
        assert follower.result(5) == "recomputed"
    assert sf.num_leaders == 2


def test_thread_follows_an_async_leader() -> None:
    # An async leader on a loop in one thread; a plain thread asks for the same key.
    sf, started, release = SingleFlight(), threading.Event(), threading.Event()

    async def compute() -> str:
        started.set()
        while not release.is_set():
            await asyncio.sleep(0.005)
        return "shared"

    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(asyncio.run, sf.ado("k", compute))
        started.wait(5)
        follower = pool.submit(sf.do, "k", lambda: "own")
        wait_until(lambda: sf.num_followers == 1)
        release.set()
        assert (leader.result(5), follower.result(5)) == ("shared", "shared")
