"""The committed real-model capture, samples/realdata/ppocr (PP-OCRv4's SVTR
neck, see samples/realdata/README.md), and its plan samples/realdata/ppocr.paro:

- `paro inspect` accepts the capture (exit 0);
- `paro calibrate` with the options the README gives reproduces the committed
  plan byte for byte;
- `paro eval` on the held-out samples 8-15 runs (exit 0).

The paro binary is $PARO, default build/paro.  Exit status 0 pass, 1 fail, 77
when the binary or the capture is missing.  Needs only the standard library.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
CAPTURE = os.path.join(ROOT, "samples", "realdata", "ppocr")
MANIFEST = os.path.join(CAPTURE, "manifest.json")
PLAN = os.path.join(ROOT, "samples", "realdata", "ppocr.paro")
# the options of samples/realdata/README.md; --device cpu because the plan
# records its backend
CALIBRATE = ["--block", "8", "--samples", "0-7", "--device", "cpu"]
MAX_BYTES = 20 << 20


def paro_binary():
    paro = os.environ.get("PARO") or os.path.join(ROOT, "build", "paro")
    if os.sep not in paro and not os.path.exists(paro):
        return paro  # a bare name: leave it to PATH
    return os.path.abspath(paro)


def run(paro, *args):
    p = subprocess.run([paro, "--no-progress"] + list(args), cwd=ROOT,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def main():
    paro = paro_binary()
    if not (os.path.isfile(paro) and os.access(paro, os.X_OK)):
        print("SKIP no paro binary at %s (set PARO or run make)" % paro)
        return 77
    if not os.path.isfile(MANIFEST) or not os.path.isfile(PLAN):
        print("SKIP the real-model capture is not there (%s, %s)" % (MANIFEST, PLAN))
        return 77

    failures = []

    def check(ok, what):
        print("%s %s" % ("ok  " if ok else "FAIL", what))
        if not ok:
            failures.append(what)

    with open(MANIFEST, encoding="utf-8") as f:
        manifest = json.load(f)
    check(manifest["grid"] == [1, 1, 40] and manifest["text_tokens"] == 0 and
          manifest["layers"] == 2 and manifest["heads"] == 8 and manifest["head_dim"] == 15 and
          len(manifest["samples"]) == 16, "manifest: grid 1x1x40, 2 layers x 8 heads x 15, 16 samples")
    size = os.path.getsize(MANIFEST) + sum(
        os.path.getsize(os.path.join(CAPTURE, s["file"])) for s in manifest["samples"])
    check(size <= MAX_BYTES, "capture is %d bytes (at most %d)" % (size, MAX_BYTES))

    rc, out, err = run(paro, "inspect", CAPTURE)
    check(rc == 0, "paro inspect exits 0 (got %d)" % rc)
    if rc != 0:
        sys.stdout.write(out[-2000:] + err[-2000:])

    with tempfile.TemporaryDirectory() as tmp:
        plan = os.path.join(tmp, "ppocr.paro")
        rc, out, err = run(paro, "-q", "calibrate", "-m", MANIFEST, "-o", plan, *CALIBRATE)
        check(rc == 0, "paro calibrate exits 0 (got %d)" % rc)
        if rc != 0:
            sys.stdout.write(err[-2000:])
        else:
            with open(plan, "rb") as f:
                got = f.read()
            with open(PLAN, "rb") as f:
                want = f.read()
            same = got == want
            check(same, "the plan is the committed samples/realdata/ppocr.paro byte for byte")
            if not same:
                first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b),
                             min(len(got), len(want)))
                print("     %d vs %d bytes, first difference at byte %d (a new paro version "
                      "or plan format? then rebuild the plan as the README says)"
                      % (len(got), len(want), first))

    rc, out, err = run(paro, "eval", "-m", MANIFEST, "-p", PLAN, "--samples", "8-15",
                       "--density-sweep", "0.1,0.2,0.3,0.5", "--device", "cpu")
    check(rc == 0, "paro eval on the held-out samples exits 0 (got %d)" % rc)
    if rc != 0:
        sys.stdout.write(err[-2000:])

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
