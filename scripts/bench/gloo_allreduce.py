#!/usr/bin/env python3
"""All-reduce of an fp32 vector among N local processes with PyTorch's gloo
backend on 127.0.0.1: the baseline `swarmtrain bench allreduce` is held
against (docs/BENCHMARKS.md). Prints the median time per round.

    python3 scripts/bench/gloo_allreduce.py --procs 4 --mib 16 --rounds 10

One process per host (e.g. one per network namespace): run it on every host
with the same --world and --master (rank 0's address:port) and its own
--rank; rank 0 prints the result.

    python3 scripts/bench/gloo_allreduce.py --world 4 --rank R --master 10.0.0.1:29500 --iface eth0
"""
import argparse
import json
import os
import socket
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, args, port, q, addr="127.0.0.1", iface="lo"):
    os.environ["MASTER_ADDR"] = addr
    os.environ["MASTER_PORT"] = str(port)
    os.environ["GLOO_SOCKET_IFNAME"] = iface
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=args.procs)
    n = int(args.mib * (1 << 20) / 4)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(n, generator=g)
    times = []
    cpu = 0.0
    for r in range(args.rounds + 1):  # one untimed warm-up round
        y = x.clone()
        dist.barrier()
        t, c = time.perf_counter(), time.process_time()
        dist.all_reduce(y)
        times.append(time.perf_counter() - t)
        if r > 0:
            cpu += time.process_time() - c
    q.put((rank, times[1:], cpu / args.rounds))
    dist.barrier()
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--procs", type=int, default=4)
    p.add_argument("--mib", type=float, default=16)
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.add_argument("--world", type=int, default=0, help="one process per host: the number of hosts")
    p.add_argument("--rank", type=int, default=0, help="one process per host: this host's rank")
    p.add_argument("--master", default="", help="one process per host: rank 0's address:port")
    p.add_argument("--iface", default="eth0", help="one process per host: the interface gloo uses")
    args = p.parse_args()
    if args.world:
        return single(args)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=worker, args=(r, args, port, q)) for r in range(args.procs)]
    for pr in procs:
        pr.start()
    got = [q.get() for _ in procs]
    for pr in procs:
        pr.join()
    times = next(t for rank, t, _ in got if rank == 0)
    cpu = sum(c for _, _, c in got)  # all processes, user + system
    med = statistics.median(times)
    if args.json:
        print(json.dumps({"seconds_per_round": med, "cpu_seconds_per_round": cpu, "rounds": times}))
    else:
        print(f"gloo all-reduce of {args.mib:.1f} MiB fp32 among {args.procs} processes: "
              f"median {1000 * med:.1f} ms over {args.rounds} rounds "
              f"(min {1000 * min(times):.1f}, max {1000 * max(times):.1f}); "
              f"CPU {1000 * cpu:.1f} ms per round, all processes")


def single(args):
    """This host's process of a --world run; rank 0 reports."""
    import queue
    addr, port = args.master.rsplit(":", 1)
    args.procs = args.world
    q = queue.Queue()
    worker(args.rank, args, int(port), q, addr, args.iface)
    rank, times, cpu = q.get()
    if rank != 0:
        return
    med = statistics.median(times)
    if args.json:
        print(json.dumps({"seconds_per_round": med, "cpu_seconds_per_round": cpu, "rounds": times}))
    else:
        print(f"gloo all-reduce of {args.mib:.1f} MiB fp32 among {args.world} hosts: "
              f"median {1000 * med:.1f} ms over {args.rounds} rounds "
              f"(min {1000 * min(times):.1f}, max {1000 * max(times):.1f}); "
              f"CPU {1000 * cpu:.1f} ms per round, rank 0")


if __name__ == "__main__":
    main()
