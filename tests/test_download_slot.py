"""A model download never holds the one-run slot: while one visitor's run waits for a download
(even a stalled one), other visitors' runs go ahead; runs themselves still go one at a time, in
order of arrival (`rvos.app.models.RunSlot`).

The mirror is a real HTTP server on 127.0.0.1 (tests/fileserver.py) that stalls mid-file.
"""

from __future__ import annotations

import threading
import time

import pytest
from fileserver import FileServer
from test_app import ROOT, start_app

from rvos.app import models as sup
from rvos.zoo import registry

REAL_CLIP = ROOT / "examples" / "bigbuckbunny.mp4"
R50 = registry.get_model_info("ytvos-r50")


def test_runs_take_the_slot_one_at_a_time_in_order_of_arrival():
    slot = sup.RunSlot()
    order: list[str] = []
    seen_ahead: dict[str, list[int]] = {}
    assert list(slot.turn()) == []  # free: taken at once, nothing ahead

    def visitor(name: str) -> None:
        seen_ahead[name] = list(slot.turn(poll_s=0.02))
        order.append(name)
        time.sleep(0.05)
        slot.release()

    threads = []
    for name in ("b", "c"):
        threads.append(threading.Thread(target=visitor, args=(name,)))
        threads[-1].start()
        time.sleep(0.1)  # b is in line before c
    time.sleep(0.1)
    assert order == []  # the first holder has not released yet
    slot.release()
    for t in threads:
        t.join(timeout=10)
    assert order == ["b", "c"]
    assert max(seen_ahead["b"]) == 1 and max(seen_ahead["c"]) == 2


def test_a_visitor_who_stops_waiting_leaves_the_line():
    slot = sup.RunSlot()
    assert list(slot.turn()) == []
    waiting = slot.turn(poll_s=0.01)
    assert next(waiting) == 1
    waiting.close()  # what Stop does to a waiting handler
    slot.release()
    assert list(slot.turn(poll_s=0.01)) == []  # nobody left in front


def test_a_place_releases_the_slot_only_if_it_took_it():
    slot = sup.RunSlot()
    first, second = slot.place(), slot.place()
    assert list(first.wait()) == []
    second.release()  # a run that failed before its turn (e.g. its download) frees nothing
    waiting = second.wait(poll_s=0.01)
    assert next(waiting) == 1  # still behind the first
    first.release()
    assert list(waiting) == [] and second.held
    second.release()
    assert list(slot.place().wait()) == []


@pytest.mark.slow
def test_a_stalled_download_holds_up_no_other_visitors_run(tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    stall_s = 15
    mirror = FileServer()
    mirror.add_file(f"/{R50.filename}", b"\0" * 3_000_000)
    mirror.stall, mirror.stall_after = "body", 1_000_000
    cache = tmp_path / "cache"
    env = {"RVOS_MIRROR": mirror.url, "RVOS_CACHE": str(cache), "RVOS_OFFLINE": "0",
           "RVOS_DOWNLOAD_STALL_S": str(stall_s)}
    try:
        app = start_app(tmp_path, "--threads", "1", env=env)
        running = next(app)
        try:
            clip = handle_file(str(REAL_CLIP))
            builtin = {"video": clip, "expressions": "the rabbit", "max_frames": 2,
                       "short_side": 96, "api_name": "/segment"}
            b = Client(running.url, verbose=False)
            started = time.monotonic()
            b.predict(**builtin)  # loads the built-in model; the baseline of a run
            baseline = time.monotonic() - started

            a = Client(running.url, verbose=False)
            job = a.submit(video=clip, expressions="the rabbit", model="ytvos-r50",
                           max_frames=1, short_side=96, api_name="/segment")
            deadline = time.monotonic() + 30
            while not mirror.requests_for(f"/{R50.filename}"):  # a's download has begun
                assert time.monotonic() < deadline, running.log.read_text()
                time.sleep(0.1)
            asked = time.monotonic()
            b.predict(**builtin)
            took = time.monotonic() - asked
            assert not job.done(), "the other run waited for the stalled download to fail"
            assert took < baseline + 5, (took, baseline)

            with pytest.raises(AppError) as err:
                job.result(timeout=stall_s + 60)
            message = str(err.value)
            assert "could not download ytvos-r50" in message
            assert f"sent no data for {stall_s} s" in message
            # The visitor is not told where the server keeps its cache (the log is).
            assert str(cache) not in message and "save it as" not in message
            assert "save it as" in running.log.read_text()
        finally:
            app.close()
    finally:
        mirror.close()
