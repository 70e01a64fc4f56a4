# Generates pillow.json and the small PNG files beside it with Pillow (Debian
# bookworm's python3-pil 9.4.0, numpy 1.24.2): Lanczos resizes of synthetic
# images that imageio_test.go rebuilds bit for bit, Image.transpose for each
# EXIF orientation, and convert("RGB") of PNGs in several modes.
# Run from this folder: python3 gen_pillow.py > pillow.json
import hashlib, io, json
import numpy as np
from PIL import Image, ImageOps

M32 = 0xFFFFFFFF


def lowbias32(x):
    x &= M32
    x = ((x ^ (x >> 16)) * 0x7FEB352D) & M32
    x = ((x ^ (x >> 15)) * 0x846CA68B) & M32
    return x ^ (x >> 16)


def pattern(seed, w, h):
    # noise in 0..63 plus a wrapping ramp: sharp edges make Lanczos overshoot
    a = np.zeros((h, w, 3), dtype=np.uint8)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                n = lowbias32(((seed * 3 + c) * h + y) * w + x) & 0x3F
                a[y, x, c] = n + (x * 7 + y * 3 + c * 50) % 192
    return a


out = {"pillow": Image.__version__, "resize": [], "transpose": [], "modes": []}
for seed, (w, h), (ow, oh) in [(1, (37, 29), (32, 24)), (2, (20, 13), (64, 40)), (3, (300, 200), (40, 24)),
                               (4, (64, 50), (64, 48)), (5, (50, 64), (48, 64)), (6, (131, 97), (128, 96))]:
    im = Image.fromarray(pattern(seed, w, h), "RGB")
    r = im.resize((ow, oh), resample=Image.LANCZOS)
    b = np.asarray(r).tobytes()
    out["resize"].append(dict(seed=seed, w=w, h=h, out_w=ow, out_h=oh, sha256=hashlib.sha256(b).hexdigest()))

src = Image.fromarray(pattern(7, 5, 3), "RGB")
methods = {2: Image.FLIP_LEFT_RIGHT, 3: Image.ROTATE_180, 4: Image.FLIP_TOP_BOTTOM, 5: Image.TRANSPOSE,
           6: Image.ROTATE_270, 7: Image.TRANSVERSE, 8: Image.ROTATE_90}
for o, m in methods.items():
    t = src.transpose(m)
    out["transpose"].append(dict(orientation=o, w=t.width, h=t.height, hex=np.asarray(t).tobytes().hex()))
# exif_transpose itself on a PNG carrying an eXIf chunk with orientation 6
exif = Image.Exif()
exif[0x0112] = 6
src.save("orient6.png", exif=exif.tobytes())
t = ImageOps.exif_transpose(Image.open("orient6.png")).convert("RGB")
out["exif_png"] = dict(file="orient6.png", w=t.width, h=t.height, hex=np.asarray(t).tobytes().hex())

# PNG modes -> convert("RGB")
base = pattern(8, 7, 5)
alpha = (np.arange(35, dtype=np.uint8).reshape(5, 7) * 7)
files = {
    "rgba.png": Image.fromarray(np.dstack([base, alpha]), "RGBA"),
    "gray.png": Image.fromarray(base[:, :, 0], "L"),
    "gray_alpha.png": Image.fromarray(np.dstack([base[:, :, 1], alpha]), "LA"),
    "palette.png": Image.fromarray(np.dstack([base, alpha]), "RGBA").convert("P"),
}
pt = Image.fromarray(base, "RGB").quantize(16)
pt.info["transparency"] = 3
files["palette_trns.png"] = pt
for name, img in files.items():
    if name == "palette_trns.png":
        img.save(name, transparency=3)
    else:
        img.save(name)
    back = Image.open(name).convert("RGB")
    out["modes"].append(dict(file=name, mode=Image.open(name).mode, hex=np.asarray(back).tobytes().hex()))
# 16-bit RGB PNG written with numpy bytes through Pillow's raw encoder is
# awkward; Pillow reads 16-bit RGB PNGs as 8-bit RGB taking the high byte.
print(json.dumps(out, indent=1))
