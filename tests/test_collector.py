"""collector.fewer_collections: young collections become rarer while images are read, and the
thresholds come back as they were (issue 10: 0.17 s of a 2 s check was the collector).

No timing: the collector's own counter of young collections is the measure of its work.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from ociboot import collector, pipeline
from ociboot.collector import YOUNG_THRESHOLD, fewer_collections
from ociboot.layer import CaptureSpec
from ociboot.ref import ImageRef, Transport
from tests.support.imagebuilder import ImageBuilder, LayerBuilder, write_oci_layout

MEMBERS = 20_000


@pytest.fixture
def default_thresholds() -> Iterator[tuple[int, int, int]]:
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    try:
        yield gc.get_threshold()
    finally:
        gc.set_threshold(*saved)


def test_the_threshold_is_raised_inside_and_restored_after(default_thresholds: tuple[int, ...]) -> None:
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        with fewer_collections():
            assert gc.get_threshold()[0] == YOUNG_THRESHOLD
        assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # an inner scope leaves the outer's
    assert gc.get_threshold() == default_thresholds


def test_the_last_thread_out_restores(default_thresholds: tuple[int, ...]) -> None:
    inside, leave = threading.Event(), threading.Event()

    def other() -> None:
        with fewer_collections():
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=other)
    thread.start()
    inside.wait(10)
    with fewer_collections():
        pass
    assert gc.get_threshold()[0] == YOUNG_THRESHOLD  # the other thread is still inside
    leave.set()
    thread.join()
    assert gc.get_threshold() == default_thresholds


@pytest.mark.parametrize("threshold", [0, YOUNG_THRESHOLD * 2])
def test_a_collector_switched_off_or_set_higher_is_left_alone(threshold: int) -> None:
    saved = gc.get_threshold()
    gc.set_threshold(threshold, 10, 10)
    try:
        with fewer_collections():
            assert gc.get_threshold()[0] == threshold
        assert gc.get_threshold()[0] == threshold
    finally:
        gc.set_threshold(*saved)


def test_loading_a_layer_of_many_members_runs_few_young_collections(
    default_thresholds: tuple[int, ...], tmp_path_factory: pytest.TempPathFactory
) -> None:
    layer = LayerBuilder()
    for i in range(MEMBERS):
        layer.file(f"usr/share/d{i // 100}/f{i}", b"")
    layout = write_oci_layout(
        tmp_path_factory.mktemp("many"), {"latest": ImageBuilder().add_layer(layer).build()}
    )
    options = pipeline.Options()
    young = [0]

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            young[0] += 1

    with pipeline.opened(str(ImageRef(Transport.OCI, path=str(layout), name="latest")), options) as source:
        image = pipeline.open_image(source, options)
        gc.callbacks.append(count)
        try:
            loaded = pipeline.load_tree(image, CaptureSpec(), options)
        finally:
            gc.callbacks.remove(count)
    assert len(loaded.layers[0].entries) == MEMBERS
    # Each member leaves an Entry and a Node (and more): at CPython's default of 700 allocations
    # that made 59 collections; at YOUNG_THRESHOLD, 1.
    assert young[0] <= 4 * MEMBERS // YOUNG_THRESHOLD + 5
    assert collector._users == 0 and gc.get_threshold() == default_thresholds
