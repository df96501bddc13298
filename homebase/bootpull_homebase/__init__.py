"""The home base: ``bootpull serve`` (docs/contract.md §4; docs/homebase.md).

- :mod:`.server`: the HTTP server and its routes; :mod:`.cli`: the command.
- :mod:`.smarthttp`: ``/repo.git`` through ``git http-backend``, read-only.
- :mod:`.store`: the SQLite event store (heartbeats replaced, raw events expired) and the
  node state derived from it.
- :mod:`.ingest`: group commit; :mod:`.admission`: the token bucket (429).
- :mod:`.feeds`: RSS/Atom, one item per node; :mod:`.page`: the status page.
- :mod:`.repoview`: deadlines and intent read from the served repository.
- :mod:`.drift`: reported state against intent; :mod:`.watch`: the change log (syslog).
"""
