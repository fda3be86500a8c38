# Convenience recipes; each is a plain script, so `just` is optional.
demo:
    bash scripts/demo.sh

test:
    bash scripts/test.sh

bench *ARGS:
    bash scripts/bench.sh {{ARGS}}
