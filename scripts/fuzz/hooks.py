"""Schemathesis hooks of scripts/fuzz-api.sh.

Each generated request is independent, but the server remembers an Idempotency-Key for 24 h
and answers 422 when a key comes back with another request (the IETF idempotency-key draft's
answer, README "HTTP API"). Generated keys repeat ("0" is drawn often), so a valid key gets a
fresh suffix before each call of a positive case: it stays valid, and a schema-valid submit
is never refused for a key an earlier case used. Negative cases are left as they are (they
expect a refusal anyway, and an edit would make schemathesis re-judge what the case omits).

Likewise `depends_on` names jobs that must exist (README "Dependencies"): generated ids name
none, so a positive case's list is emptied, which the schema allows. And an `array` of up to
10,000 tasks is load, not a different request: a positive case's `count` is cut to 3, so
that the fake runtime ends every task soon and a followed log of one ends within the
fuzzer's read timeout (large arrays are `dwr bench --arrays`' to measure).
"""

import re
import uuid

import schemathesis

HEADER = "Idempotency-Key"
MAX_KEY = 255
VALID = re.compile(r"[!-~]{1,%d}" % MAX_KEY)


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = getattr(case, "meta", None)
    if meta is not None and meta.generation.mode.is_negative:
        return
    headers = case.headers or {}
    key = headers.get(HEADER)
    if isinstance(key, str) and VALID.fullmatch(key):
        suffix = "-" + uuid.uuid4().hex
        headers[HEADER] = key[: MAX_KEY - len(suffix)] + suffix
    body = case.body
    if isinstance(body, dict) and isinstance(body.get("depends_on"), list):
        body["depends_on"] = []
    array = body.get("array") if isinstance(body, dict) else None
    if isinstance(array, dict) and isinstance(array.get("count"), (int, float)):
        array["count"] = min(array["count"], 3)
