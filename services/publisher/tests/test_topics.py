from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway_publisher.topics import MessageType, Topic, TopicCache, TopicError, TopicScheme


def test_topics_follow_the_scorp_io_layout() -> None:
    scheme = TopicScheme("mqtts", "P1", "edge-7")
    assert scheme.dbirth("B5700009151DC").value == "mqtts/P1/DBIRTH/edge-7/B5700009151DC"
    assert str(scheme.ddata("ABCD")) == "mqtts/P1/DDATA/edge-7/ABCD"
    assert scheme.subscription == "mqtts/P1/+/edge-7/+"


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#", "x#y", "+"])
@pytest.mark.parametrize("part", ["root", "project_id", "edge_node_id", "device_id"])
def test_a_bad_level_is_rejected(part: str, bad: str) -> None:
    values = {"root": "r", "project_id": "p", "edge_node_id": "e", "device_id": "d"}
    values[part] = bad
    with pytest.raises(TopicError):
        Topic(message_type=MessageType.DDATA, **values)


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#"])
def test_a_bad_scheme_is_rejected(bad: str) -> None:
    with pytest.raises(TopicError):
        TopicScheme(bad, "p", "e")
    with pytest.raises(TopicError):
        TopicScheme("r", bad, "e")
    with pytest.raises(TopicError):
        TopicScheme("r", "p", bad)
    with pytest.raises(TopicError):
        TopicScheme("r", "p", "e").ddata(bad)


def test_topic_is_frozen() -> None:
    topic = TopicScheme("r", "p", "e").ddata("d")
    with pytest.raises(dataclasses.FrozenInstanceError):
        topic.device_id = "x"  # type: ignore[misc]


@given(st.text(min_size=1).filter(lambda s: not set(s) & {"/", "+", "#"}))
def test_any_clean_level_is_kept_verbatim(level: str) -> None:
    topic = TopicScheme("r", "p", "e").ddata(level)
    assert topic.value.split("/") == ["r", "p", "DDATA", "e", level]


@given(st.text(), st.sampled_from(["/", "+", "#"]), st.text())
def test_any_level_with_a_separator_or_wildcard_is_rejected(a: str, bad: str, b: str) -> None:
    with pytest.raises(TopicError):
        TopicScheme("r", "p", "e").dbirth(a + bad + b)


def test_the_cache_gives_the_schemes_topics_and_checks_each_device() -> None:
    scheme = TopicScheme("mqtts", "P1", "edge-7")
    cache = TopicCache(scheme, max_devices=2)
    for device in ("A", "B", "C", "A"):
        topics = cache.get(device)
        assert topics == (scheme.dbirth(device).value, scheme.ddata(device).value)
        assert topics.ddata == f"mqtts/P1/DDATA/edge-7/{device}"
    for _ in range(2):  # a bad id is refused every time, never cached
        with pytest.raises(TopicError):
            cache.get("a/b")
