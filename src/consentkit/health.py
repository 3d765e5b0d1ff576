"""``GET /consent/health``: can this instance acknowledge a decision right now?

For a load balancer or an orchestrator's probe. ``200`` when decisions can be made durable
(the log answers, or the spool is writable); ``503`` when they cannot (then ``POST
/consent`` answers 503 too and the instance should leave the pool). The body says which
part is degraded and how many decisions wait in the spool; it holds nothing about visitors.
"""

from __future__ import annotations

from flask import Response, jsonify
from sqlalchemy import text

from .extension import get_state
from .migrations import SchemaOutOfDate
from .store import STORE_ERRORS


def health() -> Response:
    st = get_state()
    try:
        st.store.create_all()  # once per process: creates or checks the schema
        with st.store.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except SchemaOutOfDate:
        database = "schema out of date"  # run `flask consentkit db upgrade`
    except STORE_ERRORS:
        database = "unreachable"
    spool: dict[str, object] | None = None
    if st.spool is not None:
        try:
            pending = st.spool.pending()
        except OSError:
            pending = -1
        spool = {"writable": st.spool.writable(), "pending": pending}
    durable = database == "ok" or bool(spool and spool["writable"])
    if not durable:
        status = "down"
    elif database != "ok" or (spool is not None and spool["pending"] != 0):
        status = "degraded"  # acknowledging into the spool, or still replaying it
    else:
        status = "ok"
    response = jsonify({"status": status, "database": database, "spool": spool})
    response.status_code = 200 if durable else 503
    response.headers["Cache-Control"] = "no-store"
    return response
