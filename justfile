# Convenience recipes; each is a plain script, so `just` is optional.
demo:
    bash scripts/demo.sh

test:
    bash scripts/test.sh

bench *ARGS:
    bash scripts/bench.sh {{ARGS}}

# A local Spark Connect server (pyspark 4.x from PyPI, 127.0.0.1:15002, hive catalog under
# ~/.cache/sparkwasm/spark/state): for the Spark source/sink and for trying pipelines against Spark.
spark-up:
    bash scripts/spark.sh up

spark-down:
    bash scripts/spark.sh down
