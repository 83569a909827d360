"""Conflict detection: gtpo.algorithm against vocabulary-indexed counting, side by side.

The official GTPO code finds conflict tokens by counting (position * vocab + token id) keys with
torch.bincount, so each group allocates several buffers of vocab x length counters. Ours compares
token ids inside each group. Both are run here on the same random batch, checked to agree, and
timed (median of --repeats runs, at least 5 for ours) and their peak extra memory measured. On CUDA memory is
torch.cuda.max_memory_allocated. On CPU each method runs in a fresh child process, started with
MALLOC_MMAP_THRESHOLD_=0 so that every freed buffer leaves the resident set at once: memory is the
rise of the peak resident set (Linux VmHWM, reset before the first run) and the times are of the
same runs (the allocator setting slows small allocations, so if anything it handicaps ours). Both
run on one thread: on a shared 2-core machine, two spinning threads lose far more than they gain.

    python -m benchmarks.conflict_detection                 # N=64 (8 x 8), T=4096, V=32k and 152k
    python -m benchmarks.conflict_detection --grid full --repeats 1   # N in {16, 64, 256}, T in {512, 4096}
    python -m benchmarks.conflict_detection --grid small --vocabs 32000 --json conflicts.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch

from benchmarks.common import child_result, reset_peak_rss, vm_kib
from gtpo.algorithm import conflict_mask

GRIDS = {
    "small": [(16, 512)],
    "issue": [(64, 4096)],
    "full": [(n, t) for n in (16, 64, 256) for t in (512, 4096)],
}
# Every freed buffer leaves the resident set at once; one thread (see above).
CHILD_ENV = {"MALLOC_MMAP_THRESHOLD_": "0", "OMP_NUM_THREADS": "1"}


def vocab_indexed_conflicts(
    ids: torch.Tensor, mask: torch.Tensor, advantages: torch.Tensor, group_size: int, vocab_size: int
) -> torch.Tensor:
    """prefix_suffix conflicts by counting (position, token) keys in vocab x T bins, per group."""
    n, t = ids.shape
    valid = mask.bool()
    lengths = valid.sum(dim=1)
    steps = torch.arange(t, device=ids.device)
    out = torch.zeros(n, t, dtype=torch.bool, device=ids.device)

    def raw(keys: torch.Tensor, ok: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        in_pos = torch.bincount(keys[ok & pos.unsqueeze(1)], minlength=vocab_size * t) > 0
        in_neg = torch.bincount(keys[ok & neg.unsqueeze(1)], minlength=vocab_size * t) > 0
        return in_pos[keys] & in_neg[keys] & ok & (pos | neg).unsqueeze(1)

    for start in range(0, n, group_size):
        rows = slice(start, start + group_size)
        g_ids, g_valid, g_len, adv = ids[rows], valid[rows], lengths[rows], advantages[rows]
        pos, neg = adv > 0, adv < 0
        prefix = raw(steps * vocab_size + g_ids, g_valid, pos, neg).int().cumprod(1).bool()
        # Align from each completion's end: position s holds token lengths - 1 - s.
        src = (g_len.unsqueeze(1) - 1 - steps).clamp(min=0)
        rev_ids = g_ids.gather(1, src)
        rev_valid = steps.unsqueeze(0) < g_len.unsqueeze(1)
        rev_run = raw(steps * vocab_size + rev_ids, rev_valid, pos, neg).int().cumprod(1).bool()
        suffix = rev_run.gather(1, src)  # the same index map turns it back
        out[rows] = (prefix | suffix) & g_valid
    return out


def timed_runs(
    fn: Callable[[], torch.Tensor], device: torch.device, repeats: int
) -> tuple[torch.Tensor | None, list[float]]:
    """fn's output on its first run and the wall time of each of repeats runs."""
    times, output = [], None
    for _ in range(repeats):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        output = result if output is None else output
    return output, times


def cuda_peak_extra_mib(fn: Callable[[], torch.Tensor], device: torch.device) -> float:
    """Peak GPU memory fn needs beyond what is allocated before it runs, in MiB."""
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def _method(name: str, ids, mask, adv, group_size: int, vocab: int) -> Callable[[], torch.Tensor]:
    if name == "ours":
        return partial(conflict_mask, ids, mask, adv, group_size)
    return partial(vocab_indexed_conflicts, ids, mask, adv, group_size, vocab)


def run_in_child(name: str, n: int, t: int, vocab: int, group_size: int, repeats: int) -> tuple:
    """One method in a fresh process whose allocator unmaps freed memory: (mask, median s, MiB)."""
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "mask.pt")
        numbers = [str(x) for x in (n, t, vocab, group_size, repeats)]
        result = child_result("conflict_detection", [name, *numbers, path], CHILD_ENV)
        return torch.load(path, weights_only=True), result["seconds"], result["mib"]


def child(name: str, n: int, t: int, vocab: int, group_size: int, repeats: int, path: str) -> None:
    """In the child process: peak memory of the first run, median time of all, mask saved to path."""
    ids, mask, adv = random_batch(n, t, vocab, group_size, torch.device("cpu"))
    fn = _method(name, ids, mask, adv, group_size, vocab)
    base = reset_peak_rss()
    start = time.perf_counter()
    output = fn()
    times = [time.perf_counter() - start]
    mib = (vm_kib("VmHWM") - base) / 1024
    times += timed_runs(fn, torch.device("cpu"), repeats - 1)[1]
    torch.save(output, path)
    print(json.dumps({"seconds": statistics.median(times), "mib": mib}))


def random_batch(n: int, t: int, vocab: int, group_size: int, device: torch.device, seed: int = 0):
    """Completions that share a prefix and a suffix inside each group, like real rollouts."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (n, t), generator=gen)
    ids[:, :16] = ids[::group_size, :16].repeat_interleave(group_size, dim=0)
    lengths = torch.randint(t // 2, t + 1, (n,), generator=gen)
    mask = (torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)).long()
    eos = vocab - 1
    ids[torch.arange(n), lengths - 1] = eos
    adv = torch.randn(n, generator=gen)
    return ids.to(device), mask.to(device), adv.to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), default="issue", help="N x T sizes (see above)")
    parser.add_argument("--vocabs", type=int, nargs="+", default=[32_000, 152_000])
    parser.add_argument("--group_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of the vocabulary-indexed method")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="write every row here")
    parser.add_argument("--child", nargs=7, help=argparse.SUPPRESS)  # METHOD N T VOCAB G REPEATS PATH
    args = parser.parse_args()
    if args.child:
        name, *numbers, path = args.child
        child(name, *map(int, numbers), path)
        return

    device = torch.device(args.device)
    if min(args.vocabs) < 2:
        parser.error(f"--vocabs: every value must be at least 2, got {args.vocabs}")
    rows = []
    print(f"device={device} group_size={args.group_size} repeats={args.repeats} (median times)")
    header = (
        f"{'N':>4} {'T':>5} {'vocab':>7} | {'ours s':>8} {'ours MiB':>9} | {'vocab s':>8} {'vocab MiB':>10}"
        f" | {'speed-up':>8} {'memory':>8}"
    )
    print(header)
    print("-" * len(header))
    for n, t in GRIDS[args.grid]:
        for vocab in args.vocabs:
            if device.type == "cuda":
                ids, mask, adv = random_batch(n, t, vocab, args.group_size, device)
                ours_fn = _method("ours", ids, mask, adv, args.group_size, vocab)
                theirs_fn = _method("vocab", ids, mask, adv, args.group_size, vocab)
                ours, ours_times = timed_runs(ours_fn, device, max(args.repeats, 5))  # milliseconds
                theirs, vocab_times = timed_runs(theirs_fn, device, args.repeats)
                ours_s, vocab_s = statistics.median(ours_times), statistics.median(vocab_times)
                ours_mib = cuda_peak_extra_mib(ours_fn, device)
                vocab_mib = cuda_peak_extra_mib(theirs_fn, device)
            else:
                shape = (n, t, vocab, args.group_size)
                ours, ours_s, ours_mib = run_in_child("ours", *shape, max(args.repeats, 5))
                theirs, vocab_s, vocab_mib = run_in_child("vocab", *shape, args.repeats)
            agree = bool(torch.equal(ours.cpu(), theirs.cpu()))
            rows.append(
                {
                    "n": n,
                    "t": t,
                    "vocab": vocab,
                    "agree": agree,
                    "ours_s": ours_s,
                    "ours_mib": ours_mib,
                    "vocab_indexed_s": vocab_s,
                    "vocab_indexed_mib": vocab_mib,
                }
            )
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1) + "\n")
            print(
                f"{n:>4} {t:>5} {vocab:>7} | {ours_s:>8.4f} {ours_mib:>9.1f} | {vocab_s:>8.3f}"
                f" {vocab_mib:>10.1f} | {vocab_s / ours_s:>7.0f}x {vocab_mib / max(ours_mib, 1e-3):>7.0f}x",
                flush=True,
            )
    disagree = [f"N={r['n']} T={r['t']} vocab={r['vocab']}" for r in rows if not r["agree"]]
    if disagree:
        raise SystemExit(f"conflict masks disagree at {', '.join(disagree)}")


if __name__ == "__main__":
    main()
