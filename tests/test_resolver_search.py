"""The lease's search list in the node's resolver: ``repo`` is asked as ``repo.lab.test``.

The order of the names asked, pure; with a real dnsmasq: ``test_pipeline_search.py``.
"""

from __future__ import annotations

from bootpull import resolver


def test_names_without_a_dot_try_the_search_list_first() -> None:
    r = resolver.LeaseResolver(["127.0.0.9"], search=["lab.test", "corp.test."])
    assert r.candidates("repo") == ["repo.lab.test", "repo.corp.test", "repo"]
    assert r.candidates("repo.site") == ["repo.site", "repo.site.lab.test",
                                         "repo.site.corp.test"]
    assert r.candidates("repo.lab.test.") == ["repo.lab.test"]
    assert resolver.LeaseResolver(["127.0.0.9"]).candidates("repo") == ["repo"]


def test_update_without_an_active_hook_does_nothing() -> None:
    assert resolver.update(["10.0.0.1"], ["lab.test"]) is False
    with resolver.lease_names(["127.0.0.9"], ["a.test"]) as first:
        assert first is not None and first.search == ["a.test"]
        assert resolver.update(["127.0.0.8"], ["b.test"]) is True
        assert resolver._active is not None and resolver._active.servers == ["127.0.0.8"]
    assert resolver._active is None
