"""compare_outputs.py A B: two folders of `rvos predict` outputs (one sub-folder per clip, as
tools/predict_examples.sh writes them) hold byte-identical mask PNGs and masks.zip members and
equal result.json documents but for their timings. Last line: IDENTICAL, or how many differ."""

import json
import sys
import zipfile
from pathlib import Path

a, b = Path(sys.argv[1]), Path(sys.argv[2])
bad = 0
for da in sorted(p for p in a.iterdir() if p.is_dir()):
    db = b / da.name
    pngs = sorted(p.relative_to(da / "masks") for p in (da / "masks").rglob("*.png"))
    assert pngs == sorted(p.relative_to(db / "masks") for p in (db / "masks").rglob("*.png"))
    diff = [p for p in pngs if (da / "masks" / p).read_bytes() != (db / "masks" / p).read_bytes()]
    ja, jb = (json.loads((d / "result.json").read_text()) for d in (da, db))
    for doc in (ja, jb):
        doc.pop("timings", None)
    za, zb = (zipfile.ZipFile(d / "masks.zip") for d in (da, db))
    zsame = za.namelist() == zb.namelist() and all(za.read(n) == zb.read(n) for n in za.namelist())
    ok = not diff and ja == jb and zsame
    bad += not ok
    print(f"{da.name}: {len(pngs)} mask PNGs, {len(diff)} differ; result.json "
          f"{'equal' if ja == jb else 'DIFFERS'}; masks.zip {'equal' if zsame else 'DIFFERS'}")
print("IDENTICAL" if not bad else f"{bad} clips differ")
