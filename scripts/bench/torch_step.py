#!/usr/bin/python3
"""PyTorch baseline for `swarmtrain bench train`: the same three models and
shapes (MLP 784-512-256-10 at batch 128, the CNN at batch 64, the 2-layer
BERT with the MLM head at batch 32), one Adam training step each, median
ms per step with 1 and 2 intra-op threads.

Debian's python3-torch (1.13); OpenBLAS is whichever libopenblas.so.0 the
loader finds, so pick it as for swarmtrain:

    LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp \
        /usr/bin/python3 scripts/bench/torch_step.py --steps 30

Run it alternating with `swarmtrain bench train` in one sitting.
"""
import argparse
import statistics
import time

import torch
from torch import nn

SEQ, VOCAB, WIDTH, HEADS, LAYERS = 64, 2000, 64, 4, 2
MASKED = (SEQ * 15 + 99) // 100  # trainer.MaskedPerSequence


def mlp():
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    return model, lambda: nn.functional.cross_entropy(model(x), y)


def cnn():
    model = nn.Sequential(
        nn.Conv2d(1, 16, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1568, 128), nn.ReLU(), nn.Linear(128, 10))
    x, y = torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,))
    return model, lambda: nn.functional.cross_entropy(model(x), y)


class BERT(nn.Module):
    """Post-norm encoder, GELU feed-forward, dropout 0.1, MLM head with a
    transform, layer norm and the decoder tied to the token embedding."""

    def __init__(self):
        super().__init__()
        self.tok, self.pos, self.seg = nn.Embedding(VOCAB, WIDTH), nn.Embedding(SEQ, WIDTH), nn.Embedding(2, WIDTH)
        self.norm, self.drop = nn.LayerNorm(WIDTH, eps=1e-12), nn.Dropout(0.1)
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, 0.1, activation="gelu", batch_first=True)
        self.enc = nn.TransformerEncoder(layer, LAYERS, enable_nested_tensor=False)
        self.transform, self.hnorm = nn.Linear(WIDTH, WIDTH), nn.LayerNorm(WIDTH, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(VOCAB))

    def forward(self, ids, where):
        pos = torch.arange(SEQ).unsqueeze(0)
        h = self.drop(self.norm(self.tok(ids) + self.pos(pos) + self.seg(torch.zeros_like(ids))))
        h = self.enc(h, src_key_padding_mask=ids == 0)
        h = h.reshape(-1, WIDTH)[where]
        h = self.hnorm(nn.functional.gelu(self.transform(h)))
        return h @ self.tok.weight.t() + self.bias


def bert():
    model = BERT()
    ids = torch.randint(5, VOCAB, (32, SEQ))
    where = torch.tensor([r * SEQ + 1 + 6 * k for r in range(32) for k in range(MASKED)])
    y = torch.randint(5, VOCAB, (len(where),))
    return model, lambda: nn.functional.cross_entropy(model(ids, where), y)


def time_step(build, steps):
    torch.manual_seed(1)
    model, loss = build()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        loss().backward()
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times), min(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--only", default="", help="run only configurations whose name contains this (mlp, cnn, bert)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.__config__.parallel_info().splitlines()[0]}")
    print(f"{'model':30s} {'threads':>7s} {'median ms':>10s} {'min ms':>8s}")
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        for name, build in [("mlp-784-512-256-10-b128", mlp), ("cnn-16-32-fc128-b64", cnn), ("bert-2x64-h4-seq64-b32-mlm", bert)]:
            if args.only not in name:
                continue
            med, best = time_step(build, args.steps)
            print(f"{name:30s} {threads:7d} {med:10.2f} {best:8.2f}", flush=True)


if __name__ == "__main__":
    main()
