"""The port allocator never hands a port out twice in one process, and only hands out ports that are free."""

from __future__ import annotations

import socket
import threading

import pytest

from pmoracle.devnet.ports import SERVER_PORTS, PortAllocator, PortError, reserve_port, reserve_ports


def test_ten_thousand_ports_in_one_process_are_distinct() -> None:
    allocator = PortAllocator(seed=11)
    ports = [allocator.reserve() for _ in range(10_000)]
    assert len(set(ports)) == 10_000
    assert all(port in SERVER_PORTS for port in ports)  # below the kernel's ephemeral range


def test_the_process_wide_allocator_never_repeats_a_port() -> None:
    ports = [reserve_port() for _ in range(50)] + reserve_ports(50)
    assert len(set(ports)) == 100


def test_threads_drawing_at_once_get_distinct_ports() -> None:
    allocator = PortAllocator(seed=3)
    drawn: list[list[int]] = [[] for _ in range(8)]

    def draw(out: list[int]) -> None:
        out.extend(allocator.reserve() for _ in range(300))

    threads = [threading.Thread(target=draw, args=(out,)) for out in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [port for out in drawn for port in out]
    assert len(every) == len(set(every)) == 2_400


def test_a_port_in_use_is_never_handed_out() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        allocator = PortAllocator(range(busy, busy + 1))
        with pytest.raises(PortError, match=f"{busy}-{busy}"):
            allocator.reserve()
        assert busy in allocator.reserved  # found busy: never probed again


def test_an_exhausted_range_raises_naming_the_range() -> None:
    allocator = PortAllocator(range(29_990, 30_000), seed=5)
    got = []
    with pytest.raises(PortError, match="29990-29999"):
        while True:
            got.append(allocator.reserve())
    assert len(got) == len(set(got)) <= 10
