"""Spark side of the Spark end-to-end tests, through the Python Spark Connect client (the venv of
scripts/spark.sh):

    python tests/spark_fixture.py sc://127.0.0.1:PORT create default.rows 2000
        a table of N rows: `id` (bigint, 0..N-1), `name` (string), `score` (double); replaced if it exists
    python tests/spark_fixture.py sc://127.0.0.1:PORT count default.bronze
        prints `rows successful_distinct_ids columns` of a bronze table written through Spark
    python tests/spark_fixture.py sc://127.0.0.1:PORT legacy default.old_bronze
        a bronze table as the legacy framework creates it (every column a string but _request_time),
        15 rows: ids 0-9 "200"/"true", 10-14 "503"/"false"
    python tests/spark_fixture.py sc://127.0.0.1:PORT dump default.old_bronze
        `name:type,...` of its columns, then one JSON line per row (request_id, status_code, success,
        attempts)
"""

import json

import sys

from pyspark.sql import SparkSession


def main():
    remote, verb, table = sys.argv[1], sys.argv[2], sys.argv[3]
    spark = SparkSession.builder.remote(remote).getOrCreate()
    if verb == "create":
        rows = int(sys.argv[4])
        df = spark.range(rows).selectExpr(
            "id", "concat('name-', id) as name", "cast(id as double) / 10 as score"
        )
        df.write.mode("overwrite").saveAsTable(table)
        print(spark.table(table).count())
    elif verb == "count":
        df = spark.table(table)
        ok = df.where("success").select("request_id").distinct().count()
        print(df.count(), ok, ",".join(df.columns))
    elif verb == "legacy":
        spark.sql(f"DROP TABLE IF EXISTS {table}")
        columns = ["request_id", "row_hash", "url", "method", "request_headers", "request_params",
                   "request_metadata", "status_code", "response_headers", "body_text", "success",
                   "error_message", "attempts", "response_metadata"]
        spark.sql(f"CREATE TABLE {table} ({', '.join(c + ' STRING' for c in columns)}, _request_time TIMESTAMP)")
        values = []
        for i in range(15):
            status, ok = ("200", "true") if i < 10 else ("503", "false")
            values.append(f"('{i}', NULL, '/http://legacy/{i}', 'GET', '{{}}', '{{}}', '{{}}', '{status}', "
                          f"'{{}}', '{{}}', '{ok}', NULL, '1', '{{}}', current_timestamp())")
        spark.sql(f"INSERT INTO {table} VALUES {', '.join(values)}")
        print(spark.table(table).count())
    elif verb == "dump":
        df = spark.table(table)
        print(",".join(f"{f.name}:{f.dataType.simpleString()}" for f in df.schema.fields))
        for row in df.select("request_id", "status_code", "success", "attempts").collect():
            print(json.dumps(row.asDict()))
    else:
        sys.exit(f"unknown verb {verb}")


if __name__ == "__main__":
    main()
