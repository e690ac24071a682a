#!/usr/bin/env bash
# Seeds fuzz/corpus/<target>/ from the shared scanner fixtures, the bad-input corpus and the
# example config (the corpus itself is not committed: it grows while fuzzing).
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../../shared/fixtures/scanners
mkdir -p corpus/decode corpus/decode_forced corpus/finding corpus/config
for f in "$fixtures"/*/* ../tests/data/bad-input/*; do
    case "$f" in *.md) continue ;; esac
    name=$(basename "$f")
    cp "$f" "corpus/decode/$name"
    for i in 0 1 2 3 4; do { printf "\\x0$i"; cat "$f"; } > "corpus/decode_forced/$i-$name"; done
done
python3 - "$fixtures/asff" corpus/finding <<'PY'
import json, os, sys
src, out = sys.argv[1], sys.argv[2]
n = 0
for name in sorted(os.listdir(src)):
    if name.endswith(".md"):
        continue
    text = open(os.path.join(src, name), "rb").read()
    try:
        doc = json.loads(text)
    except ValueError:
        continue
    items = doc if isinstance(doc, list) else doc.get("Findings", [doc]) if isinstance(doc, dict) else []
    for item in items:
        open(os.path.join(out, f"{n:04}.json"), "w").write(json.dumps(item))
        n += 1
PY
cp ../config.example.toml corpus/config/example.toml
printf '[[destination]]\naccount_id = "111122223333"\nregion = "eu-west-1"\n[[destination]]\naccount_id = "444455556666"\nregion = "us-east-1"\n' > corpus/config/two.toml
echo "seeded: $(ls corpus/decode | wc -l) decode, $(ls corpus/decode_forced | wc -l) decode_forced, $(ls corpus/finding | wc -l) finding, $(ls corpus/config | wc -l) config"
