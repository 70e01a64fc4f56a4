# Generates oracle.json: the real invisible-watermark 0.2.0 (commit 68d0376,
# imwatermark/maxDct.py placed beside this script) with OpenCV 4.6.0,
# PyWavelets 1.1.1 and numpy 1.24.2 (Debian bookworm's python3-opencv and
# python3-pywt), driven exactly like diffusers' StableDiffusionXLWatermarker,
# on synthetic images built only from integer arithmetic and exactly rounded
# float64 operations, so that watermark_test.go rebuilds the same inputs bit
# for bit. Run: python3 gen_oracle.py > oracle.json
import json
import numpy as np
from maxDct import EmbedMaxDct

BITS = [int(b) for b in bin(0b101100111110110010010000011110111011000110011110)[2:]]
M32 = np.uint64(0xFFFFFFFF)


def hash32(x):
    # lowbias32 (Chris Wellons), on uint32 values held in uint64.
    x = x & M32
    x = ((x ^ (x >> np.uint64(16))) * np.uint64(0x7FEB352D)) & M32
    x = ((x ^ (x >> np.uint64(15))) * np.uint64(0x846CA68B)) & M32
    return x ^ (x >> np.uint64(16))


def make(seed, h, w, kind):
    c, y, x = np.meshgrid(np.arange(3, dtype=np.uint64), np.arange(h, dtype=np.uint64),
                          np.arange(w, dtype=np.uint64), indexing="ij")
    idx = ((np.uint64(seed) * np.uint64(3) + c) * np.uint64(h) + y) * np.uint64(w) + x
    noise = hash32(idx).astype(np.float64) / 4294967296.0  # [0, 1), exact
    ci, yi, xi = c.astype(np.int64), y.astype(np.int64), x.astype(np.int64)
    if kind == "noise":
        v = noise * 2 - 1
    elif kind == "smooth":
        ramp = ((xi * (ci + 1) + yi * (3 - ci)) % 256).astype(np.float64) / 128 - 1
        v = ramp + 0.05 * (noise - 0.5)
    else:  # "sat": a triangle wave overshooting [-1, 1] like a VAE output can
        tri = np.abs(((xi * 3 + ci * 22 + yi * 5) % 512) - 256).astype(np.float64) / 128 - 1
        v = 1.1 * tri + 0.2 * (noise - 0.5)
    return v.astype(np.float32)[None]


def apply_wm(images):
    imgs = (np.float32(255) * (images / np.float32(2) + np.float32(0.5))).transpose(0, 2, 3, 1)
    imgs = imgs[:, :, :, ::-1]  # RGB -> BGR
    enc = EmbedMaxDct(BITS, wmLen=48)
    out = np.array([enc.encode(im)[:, :, ::-1] for im in imgs]).transpose(0, 3, 1, 2)
    out = np.float32(2) * (out / np.float32(255) - np.float32(0.5))
    return np.clip(out, np.float32(-1), np.float32(1)).astype(np.float32)


def decode(bgr):
    bits = EmbedMaxDct([], wmLen=48).decode(np.ascontiguousarray(bgr))
    return "".join(str(int(b)) for b in bits)


def to_uint8(images):  # diffusers postprocess, NHWC RGB
    x = np.clip(images / np.float32(2) + np.float32(0.5), 0, 1)
    return (x * 255).round().astype(np.uint8).transpose(0, 2, 3, 1)[0]


cases = []
for seed, h, w, kind in [(1, 256, 256, "noise"), (2, 256, 256, "smooth"), (3, 263, 301, "noise"),
                         (4, 258, 257, "smooth"), (5, 256, 384, "sat"), (6, 320, 256, "sat"),
                         (7, 257, 259, "noise"), (8, 300, 290, "smooth"), (9, 256, 256, "sat"),
                         (10, 264, 272, "smooth")]:
    inp = make(seed, h, w, kind)
    wm = apply_wm(inp)
    flat = wm.ravel()
    pos = (hash32(np.arange(256, dtype=np.uint64) + np.uint64(seed * 1000)) % np.uint64(flat.size)).astype(np.int64)
    fl = (np.float32(255) * (wm / np.float32(2) + np.float32(0.5))).transpose(0, 2, 3, 1)[0]
    cases.append(dict(
        seed=seed, h=h, w=w, kind=kind,
        bits_float=decode(fl[:, :, ::-1]),
        bits_uint8=decode(to_uint8(wm)[:, :, ::-1]),
        bits_input_uint8=decode(to_uint8(inp)[:, :, ::-1]),
        samples=[[int(p), float(flat[p])] for p in pos],
    ))
print(json.dumps(dict(versions="invisible-watermark 0.2.0 (68d0376), opencv 4.6.0, pywt 1.1.1, numpy 1.24.2",
                      cases=cases)))
