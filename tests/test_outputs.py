"""Output names of ``hub generate``: each image gets a file of its own, even when several
processes write into one outputs folder."""

from __future__ import annotations

import threading

from PIL import Image

from hub.generate import _next_output, write_png


def test_a_name_handed_out_is_taken_before_the_image_is_written(ctx):
    """Two generations that ask for a name before either has written get different files."""
    first = _next_output(ctx, 7)
    second = _next_output(ctx, 7)
    assert first != second
    assert first.is_file() and second.is_file()  # reserved on disk, not merely computed
    for path, colour in ((second, (0, 0, 255)), (first, (255, 0, 0))):
        write_png(Image.new("RGB", (4, 4), colour), path, f"colour {colour}", {})
    with Image.open(first) as a, Image.open(second) as b:
        assert a.getpixel((0, 0)) == (255, 0, 0) and b.getpixel((0, 0)) == (0, 0, 255)
        assert a.text["parameters"] == "colour (255, 0, 0)"


def test_racing_threads_never_share_a_name(ctx):
    count = 16
    barrier = threading.Barrier(count)
    got: list = []

    def reserve() -> None:
        barrier.wait()
        got.append(_next_output(ctx, 1))

    threads = [threading.Thread(target=reserve) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == count
    names = sorted(p.name for p in (ctx.settings.home / "outputs").iterdir())
    assert names == sorted(p.name for p in got)
