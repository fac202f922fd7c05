"""The run database: SQLite by default (``runs.db``), any SQLAlchemy URL, PostgreSQL for teams.

Import from the modules: :mod:`.repository` (:class:`~.repository.Store`, SQLAlchemy),
:mod:`.records` (the plain records it returns), :mod:`.statuses`, :mod:`.liveness`,
:mod:`.errors`. This package module imports nothing, so that ``kni --help`` and views that
only name statuses or records never load SQLAlchemy. docs/storage.md describes the tables.
"""
