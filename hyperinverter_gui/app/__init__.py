"""The Qt-free application layer: the evented :class:`EditSession` (it says what changed; views
subscribe), the :class:`JobManager` (job ids, purposes, a cancel token per job, stale results
dropped), undo commands operating on the session, and render coalescing. May import: ``engine``
and everything below it; never ``cli`` or ``_qt``.
"""
