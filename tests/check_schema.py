"""Validates pipeline files against the schema `sparkwasm schema` printed, with the Python
`jsonschema` package (an implementation independent of sparkwasm). Usage: check_schema.py SCHEMA FILE...
Prints one line per error (FILE: path: message) and a last line `N files, M invalid`."""
import json
import sys

import jsonschema
import yaml

schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
validator = cls(schema)
invalid = 0
for name in sys.argv[2:]:
    with open(name) as f:
        doc = yaml.safe_load(f)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        print(f"{name}: {'/'.join(map(str, e.path))}: {e.message[:300]}")
    invalid += bool(errors)
print(f"{len(sys.argv) - 2} files, {invalid} invalid")
