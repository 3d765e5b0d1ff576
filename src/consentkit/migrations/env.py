"""Alembic environment of consentkit's own schema.

Never run through an ``alembic.ini``: :mod:`consentkit.migrations` builds the configuration in
code and hands over an open connection (``config.attributes["connection"]``), taken from the
app's own engine. consentkit's version table is ``consentkit_alembic_version``, so a host app
that uses Alembic (Flask-Migrate) for its own tables keeps its ``alembic_version`` untouched.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from consentkit.migrations import VERSION_TABLE, include_object
from consentkit.store.tables import metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "consentkit migrations run from `flask consentkit db upgrade` "
        "(or consentkit.migrations.upgrade), not from the alembic command"
    )

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    include_object=include_object,
    # SQLite cannot ALTER a constraint: batch mode copies the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
