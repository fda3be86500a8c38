"""Spark side of the Spark end-to-end tests, through the Python Spark Connect client (the venv of
scripts/spark.sh):

    python tests/spark_fixture.py sc://127.0.0.1:PORT create default.rows 2000
        a table of N rows: `id` (bigint, 0..N-1), `name` (string), `score` (double); replaced if it exists
    python tests/spark_fixture.py sc://127.0.0.1:PORT count default.bronze
        prints `rows successful_distinct_ids columns` of a bronze table written through Spark
"""

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
    else:
        sys.exit(f"unknown verb {verb}")


if __name__ == "__main__":
    main()
