"""Credentials never printed, logged or stored: one redaction for every URI the project shows.

Users put secrets into URIs (``MLFLOW_TRACKING_URI=https://user:token@host``, a ``--server``
or ``--host`` with a password, a signed URL's ``?token=``); any message that quotes such a URI
(an error from requests, MLflow or the KFP client, a run summary, a history record) goes
through ``redact`` first, and the CLI redacts every log record (``redact_log_records``).
"""
from __future__ import annotations

import logging
import re

_USERINFO = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s]+@")
_SECRET_QUERY = re.compile(r"([?&](?:[\w.-]*(?:token|key|secret|password|passwd|signature|sig|credential)[\w.-]*)=)"
                           r"[^&\s#'\"]+", re.IGNORECASE)
REDACTED = "***"


def redact(text: str) -> str:
    """``text`` with every URL's ``user:password@`` removed and the values of secret-looking
    query parameters (``token``, ``key``, ``password``, ``signature``, ...) replaced."""
    return _SECRET_QUERY.sub(rf"\1{REDACTED}", _USERINFO.sub(r"\1", text))


def redact_log_records() -> None:
    """From now on every log record's message is redacted when it is made, whichever
    logger or handler (Python's, absl's) ends up writing it. Idempotent."""
    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacts", False):
        return

    def redacting(*args, **kwargs):
        record = factory(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record is logging's to report, not ours
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return record

    redacting.redacts = True
    logging.setLogRecordFactory(redacting)
