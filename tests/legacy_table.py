"""A bronze table as the legacy framework creates it (src/core/bronze.py's 15 columns: everything a
string but _request_time; no batch_id), written with the Python deltalake package, and read back:

    python tests/legacy_table.py create PATH   70 rows: ids 0-49 "200"/"true", 50-59 "503"/"false",
                                               60-69 "404"/"true" (the legacy framework counted 4xx
                                               as success)
    python tests/legacy_table.py read PATH     one JSON line per row, then `schema:` and the schema
"""
import datetime
import json
import os
import sys

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

SCHEMA = pa.schema([
    pa.field("request_id", pa.string(), nullable=False),
    pa.field("row_hash", pa.string()),
    pa.field("url", pa.string(), nullable=False),
    pa.field("method", pa.string(), nullable=False),
    pa.field("request_headers", pa.string()),
    pa.field("request_params", pa.string()),
    pa.field("request_metadata", pa.string()),
    pa.field("status_code", pa.string()),
    pa.field("response_headers", pa.string()),
    pa.field("body_text", pa.string()),
    pa.field("success", pa.string()),
    pa.field("error_message", pa.string()),
    pa.field("attempts", pa.string()),
    pa.field("response_metadata", pa.string()),
    pa.field("_request_time", pa.timestamp("us", tz="UTC"), nullable=False),
])


def create(path):
    rows = []
    now = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    for i in range(70):
        status, success = ("200", "true") if i < 50 else ("503", "false") if i < 60 else ("404", "true")
        rows.append({
            "request_id": str(i), "row_hash": None, "url": f"/http://legacy/{i}", "method": "GET",
            "request_headers": "{}", "request_params": "{}", "request_metadata": '{"vendor": "acme"}',
            "status_code": status, "response_headers": "{}", "body_text": "{}", "success": success,
            "error_message": None, "attempts": "1", "response_metadata": "{}", "_request_time": now,
        })
    write_deltalake(path, pa.Table.from_pylist(rows, schema=SCHEMA))


def read(path):
    table = DeltaTable(path).to_pyarrow_table()
    for row in table.to_pylist():
        row.pop("_request_time", None)
        print(json.dumps(row))
    print("schema:")
    print(table.schema)


if __name__ == "__main__":
    {"create": create, "read": read}[sys.argv[1]](sys.argv[2])
    sys.stdout.flush()
    os._exit(0)  # see tests/read_delta.py
