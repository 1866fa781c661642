"""Contract suite for the Queue protocol, run against the in-process and the Redis queue."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from flowforge.core.errors import Unavailable
from flowforge.queues import Queue, TaskMessage, open_queue
from flowforge.queues.redis import RedisQueue, split_prefix
from tests.backends import TcpProxy, with_query

QUEUE_BACKENDS = ["memory", "redis"]


def msgs(*names: str) -> list[TaskMessage]:
    """One message per name, attempt 1 of task `name` in run r1."""
    return [TaskMessage("r1", n, 1) for n in names]


@pytest.fixture(params=QUEUE_BACKENDS)
def queue_url(request: pytest.FixtureRequest) -> str:
    """A URL naming a fresh, empty queue of each backend."""
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue("redis_url"))


@pytest.fixture
def queue(queue_url: str) -> Iterator[Queue]:
    """A fresh queue of each backend, closed afterwards."""
    q = open_queue(queue_url, consumer="consumer-1")
    try:
        yield q
    finally:
        q.close()


def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Run fn(*args) in a thread; returns (thread, result box)."""
    box: dict[str, object] = {}

    def target() -> None:
        start = time.monotonic()
        box["result"] = fn(*args)
        box["secs"] = time.monotonic() - start

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


# -- dispatch ---------------------------------------------------------------------------------
def test_messages_come_out_in_fifo_order(queue: Queue) -> None:
    queue.put(msgs("a", "b"))
    queue.put(msgs("c"))
    queue.put([])
    assert [queue.get(1) for _ in range(3)] == msgs("a", "b", "c")


def test_get_times_out_with_none(queue: Queue) -> None:
    start = time.monotonic()
    assert queue.get(0.3) is None
    assert 0.25 <= time.monotonic() - start < 2.0
    assert queue.get(0) is None


def test_get_without_waiting_takes_what_is_there(queue: Queue) -> None:
    queue.put(msgs("a"))
    assert queue.get(0) == msgs("a")[0]


def test_get_wakes_up_when_a_message_arrives(queue: Queue) -> None:
    t, box = in_thread(queue.get, 5.0)
    time.sleep(0.1)
    queue.put(msgs("late"))
    t.join(5)
    assert box["result"] == msgs("late")[0]
    assert box["secs"] < 2.0


def test_size_counts_waiting_messages_only(queue: Queue) -> None:
    assert queue.size() == 0
    queue.put(msgs("a", "b", "c"))
    assert queue.size() == 3
    m = queue.get(1)
    assert m is not None and queue.size() == 2
    queue.ack(m)
    assert queue.size() == 2


def test_ack_forgets_the_message(queue: Queue) -> None:
    queue.put(msgs("a"))
    m = queue.get(1)
    assert m is not None
    queue.ack(m)
    queue.ack(m)  # a second ack (a duplicate handled twice) is harmless
    assert queue.release_consumer("consumer-1") == 0
    assert queue.get(0.1) is None


def test_each_message_goes_to_one_taker(queue: Queue) -> None:
    names = [f"t{i:02d}" for i in range(40)]
    queue.put(msgs(*names))
    taken: list[str] = []
    lock = threading.Lock()

    def take() -> None:
        while (m := queue.get(0.2)) is not None:
            with lock:
                taken.append(m.task_id)
            queue.ack(m)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(taken) == names


# -- the scheduler's doorbell -----------------------------------------------------------------
def test_wait_for_wake_times_out_without_a_ring(queue: Queue) -> None:
    start = time.monotonic()
    assert queue.wait_for_wake(0.2) is False
    assert time.monotonic() - start >= 0.15


def test_a_ring_before_the_wait_is_not_lost(queue: Queue) -> None:
    queue.wake_scheduler()  # rung while nobody waits (the scheduler was busy ticking)
    start = time.monotonic()
    assert queue.wait_for_wake(5.0) is True
    assert time.monotonic() - start < 1.0


def test_rings_coalesce_and_are_consumed(queue: Queue) -> None:
    for _ in range(5):
        queue.wake_scheduler()
    assert queue.wait_for_wake(1.0) is True
    assert queue.wait_for_wake(0.1) is False


def test_a_ring_wakes_a_waiter_at_once(queue: Queue) -> None:
    t, box = in_thread(queue.wait_for_wake, 5.0)
    time.sleep(0.1)
    queue.wake_scheduler()
    t.join(5)
    assert box["result"] is True and box["secs"] < 1.5


# -- close ------------------------------------------------------------------------------------
def test_close_unblocks_waiting_calls(queue: Queue) -> None:
    getter, got = in_thread(queue.get, 30.0)
    waiter, waited = in_thread(queue.wait_for_wake, 30.0)
    time.sleep(0.2)
    queue.close()
    getter.join(5)
    waiter.join(5)
    assert not getter.is_alive() and not waiter.is_alive()
    assert got["result"] is None and got["secs"] < 3.0
    assert waited["secs"] < 3.0
    assert queue.get(0.5) is None


# -- Redis only: several processes share one queue ------------------------------------------------
def redis_queues(url: str, *consumers: str) -> list[RedisQueue]:
    """One RedisQueue per consumer name on the same URL, as if each were another process."""
    queues = [open_queue(url, consumer=c) for c in consumers]
    assert all(isinstance(q, RedisQueue) for q in queues)
    return queues  # type: ignore[return-value]


def test_redis_message_taken_by_a_dead_consumer_is_given_back(redis_url: str) -> None:
    dead, alive = redis_queues(redis_url, "dead-worker", "live-worker")
    try:
        dead.put(msgs("a", "b", "c"))
        assert dead.get(1) == msgs("a")[0]
        assert dead.get(1) == msgs("b")[0]
        # `dead` now stops forever without acking (SIGKILL): its messages are invisible to others
        assert alive.size() == 1
        assert alive.get(1) == msgs("c")[0]
        assert alive.get(0.1) is None
        assert alive.release_consumer("dead-worker") == 2  # the scheduler declared it dead
        assert alive.release_consumer("dead-worker") == 0
        assert [alive.get(1), alive.get(1)] == msgs("a", "b")  # given back in their order, first in line
    finally:
        alive.close()
        dead._redis.close()  # not close(): a dead consumer gives nothing back itself


def test_redis_close_gives_back_unacked_messages(redis_url: str) -> None:
    first, second = redis_queues(redis_url, "first", "second")
    try:
        first.put(msgs("a", "b"))
        taken = first.get(1)
        assert taken == msgs("a")[0]
        first.close()  # stopped before handling it
        assert [second.get(1), second.get(1)] == msgs("a", "b")
    finally:
        second.close()


def test_redis_wake_crosses_processes(redis_url: str) -> None:
    api, scheduler = redis_queues(redis_url, "api", "scheduler")
    try:
        api.wake_scheduler()
        assert scheduler.wait_for_wake(2.0) is True
        assert scheduler.wait_for_wake(0.1) is False
    finally:
        api.close()
        scheduler.close()


def test_redis_prefixes_are_separate(redis_url: str) -> None:
    other_url = with_query(redis_url, prefix=split_prefix(redis_url)[1] + "-other")
    (one,) = redis_queues(redis_url, "c")
    (other,) = redis_queues(other_url, "c")
    try:
        one.put(msgs("a"))
        one.wake_scheduler()
        assert other.size() == 0 and other.get(0.1) is None and other.wait_for_wake(0.1) is False
        assert one.get(1) == msgs("a")[0]
    finally:
        one.close()
        other.close()
        import redis

        redis.Redis.from_url(split_prefix(redis_url)[0]).delete(f"{other.prefix}:wake")


def test_redis_outage_is_survived(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """While Redis is unreachable, get and wait log, back off and return empty; then carry on."""
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379).start()
    proxied = redis_url.replace(target.netloc, f"127.0.0.1:{proxy.port}", 1)
    q = open_queue(proxied, consumer="c")
    try:
        q.put(msgs("before"))
        assert q.get(1) == msgs("before")[0]
        proxy.stop()
        with caplog.at_level(logging.WARNING, logger="flowforge.queues.redis"):
            start = time.monotonic()
            assert q.get(0.5) is None
            assert q.wait_for_wake(0.5) is False
            q.wake_scheduler()  # best effort: logged, not raised
            assert time.monotonic() - start < 3.0
        assert "Redis unavailable" in caplog.text
        with pytest.raises(Unavailable):
            q.put(msgs("lost"))  # the caller (the scheduler) must know, to push again later
        proxy.start()
        deadline = time.monotonic() + 10
        got = None
        while got is None and time.monotonic() < deadline:
            q.put(msgs("after")) if q.size() == 0 else None
            got = q.get(0.5)
        assert got == msgs("after")[0]
    finally:
        proxy.stop()
        q.close()


# -- URLs -------------------------------------------------------------------------------------
def test_queue_urls() -> None:
    assert split_prefix("redis://h:1/0") == ("redis://h:1/0", "flowforge")
    assert split_prefix("redis://h:1/2?prefix=ff&socket_timeout=3") == (
        "redis://h:1/2?socket_timeout=3",
        "ff",
    )
    with pytest.raises(ValueError, match="prefix"):
        split_prefix("redis://h/0?prefix=")
    with pytest.raises(ValueError, match="FLOWFORGE_QUEUE"):
        open_queue("kafka://broker:9092")


def test_unreachable_redis_is_reported() -> None:
    with pytest.raises(Unavailable, match="cannot connect to Redis"):
        open_queue("redis://127.0.0.1:1/0")
