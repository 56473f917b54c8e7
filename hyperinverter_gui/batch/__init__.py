"""Batch processing of many photos, on one machine or a Ray cluster, with one recipe and one output layout.

What lives here: reading the inputs (a folder, a glob, a list file) into numbered items with
collision-free output names (``inputs``), the recipe every worker follows and the per-item work
(``work``: prepare = open + align, then invert + edit + write through ``app.export`` and the
engine), the results table that makes runs resumable (``table``), and the executors that schedule
the work (``local``: worker processes for alignment and the engine in this process; ``ray_executor``:
Ray Data, an optional extra). Both executors call the same functions on the same fixed groups of
items, so they write the same bytes.

May import: ``app``, ``engine`` and everything below them. Never ``cli`` or ``_qt``. Only
``ray_executor`` imports Ray.
"""
