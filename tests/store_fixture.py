"""Object-store fixtures for the e2e tests (tests/e2e/stores.rs): what sparkwasm itself never does —
create buckets and containers, upload source files, set up credentials the emulator then enforces —
and the independent read-back of a Delta table with the Python `deltalake` package.

    store_fixture.py s3-bucket ENDPOINT BUCKET
    store_fixture.py s3-put ENDPOINT BUCKET KEY FILE
    store_fixture.py s3-list ENDPOINT BUCKET PREFIX    # the keys below PREFIX, one per line
    store_fixture.py s3-enforce-auth ENDPOINT          # prints "KEY_ID SECRET" of a new IAM user
    store_fixture.py az-container BLOB_URL CONTAINER   # BLOB_URL: http://127.0.0.1:PORT (Azurite)
    store_fixture.py az-put BLOB_URL CONTAINER BLOB FILE
    store_fixture.py dynamo-table ENDPOINT NAME        # delta-rs's lock table layout
    store_fixture.py dynamo-count ENDPOINT NAME        # its items (one per commit)
    store_fixture.py read URI OPTIONS_JSON             # rows=N successful_ids=M
    store_fixture.py txn URI OPTIONS_JSON APP_ID       # the app id's transaction version (0 if none)
    store_fixture.py parquet FILE ROWS GROUP_ROWS      # ids 0..ROWS and a 1 KiB note, GROUP_ROWS per row group
    store_fixture.py csv FILE ROWS                     # id,note with a 1 KiB note per row
"""
import base64
import hashlib
import hmac
import http.client
import json
import os
import sys
import urllib.parse
from email.utils import formatdate

# Azurite's documented development account.
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def client(service, endpoint):
    """A boto3 client of moto's `service` (moto takes any key until told to check them)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def s3(endpoint):
    return client("s3", endpoint)


def azure(base, method, path, query=None, headers=None, body=b""):
    """One Shared Key request to Azurite (path below the account: container or container/blob)."""
    u = urllib.parse.urlsplit(base)
    resource = f"/{AZ_ACCOUNT}/{path.lstrip('/')}"
    h = {k.lower(): v for k, v in (headers or {}).items()}
    h["x-ms-date"] = formatdate(usegmt=True)
    h["x-ms-version"] = "2023-11-03"
    h["content-length"] = str(len(body))
    length = h["content-length"] if body else ""
    signed = [method, "", "", length, "", h.get("content-type", ""), "", "", "", "", "", ""]
    canonical = "".join(f"{k}:{h[k].strip()}\n" for k in sorted(h) if k.startswith("x-ms-"))
    canonical += f"/{AZ_ACCOUNT}{urllib.parse.quote(resource)}"
    for k in sorted(query or {}):
        canonical += f"\n{k.lower()}:{query[k]}"
    text = "\n".join(signed) + "\n" + canonical
    mac = hmac.new(base64.b64decode(AZ_KEY), text.encode(), hashlib.sha256).digest()
    h["authorization"] = f"SharedKey {AZ_ACCOUNT}:{base64.b64encode(mac).decode()}"
    url = urllib.parse.quote(resource) + ("?" + urllib.parse.urlencode(query) if query else "")
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request(method, url, body=body or None, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, data


def table(uri, options):
    from deltalake import DeltaTable

    return DeltaTable(uri, storage_options=json.loads(options))


def main(argv):
    cmd = argv[1]
    if cmd == "s3-bucket":
        s3(argv[2]).create_bucket(Bucket=argv[3])
    elif cmd == "s3-put":
        s3(argv[2]).upload_file(argv[5], argv[3], argv[4])
    elif cmd == "s3-list":
        pages = s3(argv[2]).get_paginator("list_objects_v2").paginate(Bucket=argv[3], Prefix=argv[4])
        for page in pages:
            for o in page.get("Contents", []):
                print(o["Key"])
    elif cmd == "s3-enforce-auth":
        # moto accepts any key until told to check them: create a user with full access, then
        # switch checking on (moto's documented reset-auth call).
        iam = client("iam", argv[2])
        iam.create_user(UserName="etl")
        policy = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}],
        }
        iam.put_user_policy(UserName="etl", PolicyName="all", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="etl")["AccessKey"]
        u = urllib.parse.urlsplit(argv[2])
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
        conn.request("POST", "/moto-api/reset-auth", body="0", headers={"Content-Type": "text/plain"})
        assert conn.getresponse().status == 200
        print(key["AccessKeyId"], key["SecretAccessKey"])
    elif cmd == "az-container":
        status, data = azure(argv[2], "PUT", argv[3], {"restype": "container"})
        if status not in (201, 409):
            raise SystemExit(f"create container: HTTP {status} {data[:300]!r}")
    elif cmd == "az-put":
        with open(argv[5], "rb") as f:
            body = f.read()
        status, data = azure(
            argv[2], "PUT", f"{argv[3]}/{argv[4]}", headers={"x-ms-blob-type": "BlockBlob"}, body=body
        )
        if status != 201:
            raise SystemExit(f"put blob: HTTP {status} {data[:300]!r}")
    elif cmd in ("dynamo-table", "dynamo-count"):
        db = client("dynamodb", argv[2])
        if cmd == "dynamo-table":
            db.create_table(
                TableName=argv[3],
                KeySchema=[
                    {"AttributeName": "tablePath", "KeyType": "HASH"},
                    {"AttributeName": "fileName", "KeyType": "RANGE"},
                ],
                AttributeDefinitions=[
                    {"AttributeName": "tablePath", "AttributeType": "S"},
                    {"AttributeName": "fileName", "AttributeType": "S"},
                ],
                BillingMode="PAY_PER_REQUEST",
            )
        else:
            print(db.scan(TableName=argv[3], Select="COUNT")["Count"])
    elif cmd == "read":
        t = table(argv[2], argv[3]).to_pyarrow_table()
        ok = t.filter(t["success"])
        print(f"rows={t.num_rows} successful_ids={len(set(ok['request_id'].to_pylist()))}")
    elif cmd == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = int(argv[3])
        notes = [f"{i:08d}" * 128 for i in range(rows)]
        t = pa.table({"id": pa.array(range(rows), pa.int64()), "note": notes})
        pq.write_table(t, argv[2], row_group_size=int(argv[4]), compression="none")
    elif cmd == "csv":
        with open(argv[2], "w") as f:
            f.write("id,note\n")
            for i in range(int(argv[3])):
                f.write(f"{i},{f'{i:08d}' * 128}\n")
    elif cmd == "txn":
        print(table(argv[2], argv[3]).transaction_version(argv[4]) or 0)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main(sys.argv)
    sys.stdout.flush()
    # See tests/read_delta.py: the deltalake wheel may abort in interpreter teardown.
    os._exit(0)
