"""What every database's ingest store shares: the rows a batch stored, their job ids, and the
stored form of a request's headers."""

from __future__ import annotations

from collections.abc import Callable
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]

# (raw event id, job id, tenant id) of each event stored new
Stored = list[tuple[str, str, str]]
Committed = Callable[[Stored], None]  # told what a batch stored once it is committed

RAW_PREFIX = "raw_"
JOB_PREFIX = "job_"


def inbound_job_id(raw_id: str) -> str:
    """The inbound job of a raw event shares its id's ULID (`raw_01…` → `job_01…`): unique
    and in arrival order like the event's, and known without asking the database."""
    return JOB_PREFIX + raw_id[len(RAW_PREFIX) :]


# The C encoder itself, made once: `json.dumps` builds one per call (a third of its cost for
# a request's few headers). Same output as json.dumps(separators=(",", ":")).
_encode_json = c_make_encoder(None, None, encode_basestring_ascii, None, ":", ",", False, False, True)


def headers_json(headers: dict[str, str]) -> str:
    return "".join(_encode_json(headers, 0))
