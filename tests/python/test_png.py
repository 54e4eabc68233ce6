"""Tests of `paro dump --png`: the files decode with zlib and struct alone
(chunks, CRCs, inflate, the five row filters) to pictures of the expected
size whose pixels show the plan: mask tiles in the kept / kept-with-text /
skipped colours, the tile-mass heat map on the legend's colour ramp.

The positions below follow the layout of formats/plan_picture.c: a 16-pixel
margin, three title lines of 20 pixels, a caption line, then the panels
(64 pixels per tile for up to 8 tiles a side) inside one-pixel frames.

Environment: PARO, the paro binary (default ./paro).
"""

import os
import subprocess
import sys
import tempfile
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plan_builder as pb  # noqa: E402

paro_plan = pb.paro_plan

KEPT, KEPT_TEXT, SKIPPED = (238, 238, 232), (140, 190, 240), (48, 48, 62)
BACKGROUND = (18, 18, 24)
STOPS = [(0, 0, 4), (87, 16, 110), (188, 55, 84), (249, 142, 9), (252, 255, 164)]

# head picture: panels of the tiny plans (3 x 3 tiles of 64 pixels)
MASK_XY, HEAT_XY, CELL = (17, 107), (257, 107), 64
LEGEND_XY = (257, 107 + 3 * 64 + 1 + 12)


def ramp(num, den):
    """The heat-map ramp at num / den: five stops, integer interpolation."""
    pos = (num * 4 * 254 + den // 2) // den
    seg = min(pos // 254, 3)
    frac = pos - seg * 254
    return tuple((a * (254 - frac) + b * frac + 127) // 254
                 for a, b in zip(STOPS[seg], STOPS[seg + 1]))


def heat_floor(levels):
    """The level a head's heat map starts from: its smallest level above 0,
    at most a decade (254 / 6 levels) below the largest."""
    return min([v for row in levels for v in row if v] + [255 - 254 // 6])


def mask_colour(kept, qi, kj, text_blocks):
    if not kept:
        return SKIPPED
    return KEPT_TEXT if qi in text_blocks or kj in text_blocks else KEPT


class Pictures(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.dir = cls.tmp.name

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def picture(self, plan, *args, name="p.png"):
        out = os.path.join(self.dir, name)
        rc, _, err = pb.paro("dump", plan, "--png", out, *args, check=False, quiet=False)
        self.assertEqual(rc, 0, err)
        with open(out, "rb") as f:
            data = f.read()
        return pb.png_decode(data) + (data, err)

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_head_with_tile_mass(self):
        masks = [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
        levels = [[255, 0, 3], [128, 200, 0], [10, 60, 255]]
        plan = self.write("tm.paro", pb.tiny_plan(masks, tile_mass=levels))
        w, h, rows, data, err = self.picture(plan, "--layer", 0, "--head", 0)
        self.assertEqual((w, h), (666, 388))
        self.assertEqual(err, "")
        lo = heat_floor(levels)
        self.assertEqual(lo, 3)
        for qi in range(3):
            for kj in range(3):
                cx, cy = kj * CELL + CELL // 2, qi * CELL + CELL // 2
                want = mask_colour(masks[qi][kj], qi, kj, {0})  # block 0 holds the text token
                self.assertEqual(rows[MASK_XY[1] + cy][MASK_XY[0] + cx], want, (qi, kj))
                # the tile's corners too: whole tiles, no gaps
                self.assertEqual(rows[MASK_XY[1] + qi * CELL][MASK_XY[0] + kj * CELL], want)
                v = levels[qi][kj]
                heat = ramp(max(v - lo, 0), 255 - lo) if v else STOPS[0]
                self.assertEqual(rows[HEAT_XY[1] + cy][HEAT_XY[0] + cx], heat, (qi, kj, v))
        # the frame around the mask panel
        self.assertEqual(rows[MASK_XY[1] - 1][MASK_XY[0] + 5], (96, 96, 112))
        # the legend strip: column i is the ramp at i / 255, brighter to the right
        legend = [rows[LEGEND_XY[1] + 7][LEGEND_XY[0] + i] for i in range(256)]
        self.assertEqual(legend, [ramp(i, 255) for i in range(256)])
        self.assertEqual((legend[0], legend[255]), (STOPS[0], STOPS[4]))
        sums = [sum(c) for c in legend]
        self.assertEqual(sums, sorted(sums))
        # the same plan, the same bytes; and to stdout
        again = self.picture(plan, "--layer", 0, "--head", 0, name="again.png")[3]
        self.assertEqual(data, again)
        r = subprocess.run([pb.PARO, "dump", plan, "--png", "-", "--layer", "0", "--head", "0"],
                           stdout=subprocess.PIPE, check=True)
        self.assertEqual(r.stdout, data)

    def test_head_without_tile_mass(self):
        """A plan without TILEMASS (format 1.0, PLAN.md's example): the mask,
        and a warning instead of the heat map."""
        plan = self.write("example.paro", pb.plan_md_example())
        w, h, rows, _, err = self.picture(plan, "--layer", 0, "--head", 0)
        self.assertIn("has no tile masses", err)
        self.assertEqual((w, h), (666, 388))
        masks = paro_plan.load(plan)["masks"][0][0][0]
        for qi in range(3):
            for kj in range(3):
                self.assertEqual(rows[MASK_XY[1] + qi * CELL + 5][MASK_XY[0] + kj * CELL + 5],
                                 mask_colour(masks[qi][kj], qi, kj, {0}))
        # no heat map where it would be: the ground, or the note's text
        lower = [rows[HEAT_XY[1] + 150][x] for x in range(HEAT_XY[0], HEAT_XY[0] + 192)]
        self.assertEqual(set(lower), {BACKGROUND})

    def test_calibrated_plan(self):
        """A plan from paro calibrate: every tile of every head's mask, at 64
        pixels per tile (7 x 7 tiles), in both pictures."""
        plan = pb.synth_plan(self.dir, "cap", "calibrated", extra=("--density", 0.4, "--tile-mass"))
        doc = paro_plan.load(plan, tile_mass=True)
        # --tile-mass stores the levels: per layer, bucket and head the
        # largest tile is level 255 (PLAN.md TILEMASS)
        self.assertIsNotNone(doc["tile_mass"])
        for layer in doc["tile_mass"]:
            for bucket in layer:
                for head in bucket:
                    self.assertEqual(max(max(row) for row in head), 255)
        nq, nk = doc["blocks"]
        text_blocks = {p // 16 for p in range(doc["text_tokens"])}
        for head in range(doc["num_heads"]):
            w, h, rows, _, err = self.picture(plan, "--layer", 1, "--head", head)
            if doc["tile_mass"] is None:
                self.assertIn("has no tile masses", err)
            masks = doc["masks"][1][0][head]
            for qi in range(nq):
                for kj in range(nk):
                    self.assertEqual(rows[MASK_XY[1] + qi * CELL + 9][MASK_XY[0] + kj * CELL + 9],
                                     mask_colour(masks[qi][kj], qi, kj, text_blocks))
        # all heads of a layer: thumbnails of 27 pixels per tile (192 // 7), eight
        # a row, 20 pixels apart, with two caption lines under each
        w, h, rows, _, err = self.picture(plan, "--layer", 0, name="layer.png")
        self.assertEqual(err, "")
        cell, caption_w = 192 // 7, 15 * 12 - 2
        step_x = max(nk * cell + 2, caption_w) + 20
        step_y = nq * cell + 2 + 6 + 2 * 20 + 14
        grid_x, grid_y = 17, 16 + 3 * 20 + 12 + 1
        self.assertEqual(w, 2 * 16 + 4 * step_x - 20)
        self.assertEqual(h, grid_y + step_y - 14 + 16)
        for head in range(doc["num_heads"]):
            masks = doc["masks"][0][0][head]
            for qi in range(nq):
                for kj in range(nk):
                    x = grid_x + head * step_x + kj * cell + cell // 2
                    y = grid_y + qi * cell + cell // 2
                    self.assertEqual(rows[y][x], mask_colour(masks[qi][kj], qi, kj, text_blocks))

    def test_usage(self):
        plan = self.write("example.paro", pb.plan_md_example())
        out = os.path.join(self.dir, "x.png")
        for args, want in (
                (("--png", out), "--png needs --layer"),
                (("--png", out, "--layer", 3), "has no layer 3 (it has 0)"),
                (("--png", out, "--layer", 0, "--head", 1), "--head 1: the plan has 1 heads"),
                (("--png", out, "--layer", 0, "--bucket", 1), "--bucket 1: the plan has 1 bucket"),
                (("--layer", 0), "--layer, --head and --bucket go with --png"),
                (("--png", out, "--json", "--layer", 0), "exclude each other")):
            rc, stdout, err = pb.paro("dump", plan, *args, check=False)
            self.assertEqual(rc, 2, args)
            self.assertIn(want, err)
            self.assertEqual(stdout, b"")
            self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
    unittest.main(verbosity=1)
