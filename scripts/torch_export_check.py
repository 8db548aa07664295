#!/usr/bin/env python3
"""Evaluate a swarmtrain MNIST export (--layout torch) in PyTorch, preparing
the inputs with nothing but the preprocessing recorded in the file.

usage: torch_export_check.py MODEL.safetensors MNIST_DIR
(MNIST_DIR holds t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz.)
Prints the test accuracy; needs torch and numpy only."""
import gzip, json, os, struct, sys

import numpy as np
import torch

path, mnist = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    blob = f.read()
meta = json.loads(header.pop("__metadata__")["swarmtrain"])
pre = meta["preprocess"]
tensors = {}
for name, t in header.items():
    a, b = t["data_offsets"]
    tensors[name] = torch.from_numpy(np.frombuffer(blob[a:b], np.float32).reshape(t["shape"]).copy())

def idx(name):
    p = os.path.join(mnist, name)
    data = gzip.open(p).read() if os.path.exists(p) else open(p[:-3], "rb").read()
    nd = data[3]
    dims = struct.unpack(">" + "I" * nd, data[4 : 4 + 4 * nd])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * nd).reshape(dims)

images, labels = idx("t10k-images-idx3-ubyte.gz"), idx("t10k-labels-idx1-ubyte.gz")
c, h, w = pre["channels"], pre["height"], pre["width"]
x = images.reshape(-1, c, h, w).astype(np.float32) / 255
x = (x - np.array(pre["mean"]).reshape(1, -1, 1, 1)) / np.array(pre["std"]).reshape(1, -1, 1, 1)
x = torch.from_numpy(x.astype(np.float32))
if pre.get("flatten"):
    x = x.reshape(len(x), -1)

# Rebuild the nn.Sequential the torch layout names: Linear/Conv2d at the
# indices the file holds, ReLU (and for convs MaxPool2d) between them.
idxs = sorted({int(k.split(".")[0]) for k in tensors})
layers, last = [], -1
for i in idxs:
    wt = tensors["%d.weight" % i]
    while last + 1 < i:
        last += 1
        layers.append(None)
    if wt.dim() == 4:
        layers.append(torch.nn.Conv2d(wt.shape[1], wt.shape[0], wt.shape[2], padding=wt.shape[2] // 2))
    else:
        layers.append(torch.nn.Linear(wt.shape[1], wt.shape[0]))
    last = i
mods = []
for i, m in enumerate(layers):
    if m is not None:
        mods.append(m)
        continue
    prev = next(l for l in reversed(layers[:i]) if l is not None)
    conv_before = isinstance(prev, torch.nn.Conv2d)
    k = i - layers.index(prev)
    if conv_before and k == 1:
        mods.append(torch.nn.ReLU())
    elif conv_before and k == 2:
        mods.append(torch.nn.MaxPool2d(2))
    elif conv_before and k == 3:
        mods.append(torch.nn.Flatten())
    else:
        mods.append(torch.nn.ReLU())
model = torch.nn.Sequential(*mods)
model.load_state_dict(tensors)
with torch.no_grad():
    pred = model(x).argmax(1).numpy()
acc = float((pred == labels).mean())
print("labels %s, normalisation mean %s std %s" % (pre["labels"], pre["mean"], pre["std"]))
print("pytorch test accuracy: %.2f%%" % (100 * acc))
