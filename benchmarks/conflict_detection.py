"""Conflict detection: gtpo.algorithm against vocabulary-indexed counting, side by side.

The official GTPO code finds conflict tokens by counting (position * vocab + token id) keys with
torch.bincount, so each group allocates several buffers of vocab x length counters. Ours compares
token ids inside each group. Both are run here on the same random batch, checked to agree, and
timed (median of --repeats runs) with their peak extra memory: on CPU the rise of the process's
peak resident set (Linux VmHWM, reset before each run), on CUDA torch.cuda.max_memory_allocated.

    python benchmarks/conflict_detection.py                 # N=64 (8 x 8), T=4096, V=32k and 152k
    python benchmarks/conflict_detection.py --grid full     # N in {16, 64, 256}, T in {512, 4096}
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch

from gtpo.algorithm import conflict_mask


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


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(fn: Callable[[], torch.Tensor], device: torch.device, repeats: int) -> tuple[float, float]:
    """(median seconds, peak extra MiB) of fn over repeats runs."""
    times, peaks = [], []
    for _ in range(repeats):
        gc.collect()
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            with open("/proc/self/clear_refs", "w") as refs:
                refs.write("5")  # reset VmHWM to the current resident set
            base = _vm_kib("VmRSS") * 1024
        start = time.perf_counter()
        result = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        del result
        peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else _vm_kib("VmHWM") * 1024
        peaks.append((peak - base) / 2**20)
    return statistics.median(times), statistics.median(peaks)


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
    parser.add_argument("--grid", choices=["issue", "full"], default="issue")
    parser.add_argument("--group_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [(64, 4096)] if args.grid == "issue" else [(n, t) for n in (16, 64, 256) for t in (512, 4096)]
    vocabs = [32_000, 152_000]

    print(f"device={device} group_size={args.group_size} repeats={args.repeats} (medians)")
    header = (
        f"{'N':>4} {'T':>5} {'vocab':>7} | {'ours s':>8} {'ours MiB':>9} | {'vocab s':>8} {'vocab MiB':>10}"
        f" | {'speed-up':>8} {'memory':>8}"
    )
    print(header)
    print("-" * len(header))
    for n, t in sizes:
        for vocab in vocabs:
            ids, mask, adv = random_batch(n, t, vocab, args.group_size, device)
            ours = conflict_mask(ids, mask, adv, args.group_size)
            theirs = vocab_indexed_conflicts(ids, mask, adv, args.group_size, vocab)
            if not torch.equal(ours, theirs):
                raise SystemExit(f"conflict masks disagree at N={n} T={t} vocab={vocab}")
            del ours, theirs
            ours_s, ours_mib = measure(
                partial(conflict_mask, ids, mask, adv, args.group_size), device, args.repeats
            )
            theirs_fn = partial(vocab_indexed_conflicts, ids, mask, adv, args.group_size, vocab)
            vocab_s, vocab_mib = measure(theirs_fn, device, args.repeats)
            print(
                f"{n:>4} {t:>5} {vocab:>7} | {ours_s:>8.4f} {ours_mib:>9.1f} | {vocab_s:>8.3f}"
                f" {vocab_mib:>10.1f} | {vocab_s / ours_s:>7.0f}x {vocab_mib / max(ours_mib, 1e-3):>7.0f}x",
                flush=True,
            )


if __name__ == "__main__":
    main()
