"""Download benchmark: ``StableAudioHook.download_audio`` beside ``curl -o`` on the same URL.

The emulator (its own process) serves ``GET /_emulator/blob?size=N``: exactly N bytes, streamed. The
hook downloads it in a fresh subprocess (so its peak RSS growth is its own), after the connection
lookup and the HTTP session are set up; ``curl -o`` downloads the same URL to the same folder. A
first round is not counted (it warms the memory the page cache will use), then the runs alternate
in order; the table shows the median throughput of each and the hook's worst peak RSS growth.

Usage::

    python benchmarks/download.py               # 200 MB, 5 runs of each
    python benchmarks/download.py --quick       # 50 MB, 1 run of each
    python benchmarks/download.py --size-mb 500 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trigger_fanout import (  # run as a script, from benchmarks/ (as `make bench` does)
    ROOT,
    child_env,
    die_with_parent,
    peak_rss_kb,
    reset_peak_rss,
    start_emulator,
    stop_process,
)

MB = 1_000_000  # decimal megabytes throughout
RSS_TARGET_MB = 16.0
THROUGHPUT_TARGET = 0.70  # of curl's


def _child(url: str, dest: str, size: int) -> int:
    """Download once through the hook; print what it took as JSON."""
    from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook

    hook = StableAudioHook()
    hook.get_conn()  # the session, and (below) the connection lookup: set-up, not download
    _ = hook.settings
    peak_reset = reset_peak_rss()
    before = peak_rss_kb()
    started = time.perf_counter()
    hook.download_audio(url, dest, expected_size=size)
    seconds = time.perf_counter() - started
    growth_kb = peak_rss_kb() - before
    received = os.path.getsize(dest)
    os.unlink(dest)
    print(
        json.dumps(
            {"seconds": seconds, "bytes": received, "rss_growth_kb": growth_kb, "peak_reset": peak_reset}
        )
    )
    return 0


def run_hook(url: str, dest: Path, size: int, env: dict[str, str]) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", url, str(dest), str(size)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
        preexec_fn=die_with_parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the hook's download failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    if result["bytes"] != size:
        raise RuntimeError(f"the hook wrote {result['bytes']} bytes, expected {size}")
    return result


def run_curl(curl: str, url: str, dest: Path, size: int) -> dict[str, float]:
    """``curl -o`` once; its transfer time from ``-w``, its whole-process peak RSS from ``wait4``."""
    proc = subprocess.Popen(
        [
            curl,
            "-sS",
            "--fail",
            "--noproxy",
            "*",
            "-o",
            str(dest),
            "-w",
            "%{size_download} %{time_total}",
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=die_with_parent,
    )
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out = proc.stdout.read().decode() if proc.stdout else ""
        err = proc.stderr.read().decode() if proc.stderr else ""
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    if proc.returncode != 0:
        raise RuntimeError(f"curl failed ({proc.returncode}): {err.strip()}")
    received, seconds = out.split()
    dest.unlink()
    if int(received) != size:
        raise RuntimeError(f"curl received {received} bytes, expected {size}")
    return {"seconds": float(seconds), "bytes": int(received), "peak_rss_kb": usage.ru_maxrss}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mb", type=int, help="MB to download (default 200; 50 with --quick)")
    parser.add_argument("--runs", type=int, help="runs of each (default 5; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="50 MB, 1 run of each")
    parser.add_argument("--child", nargs=3, metavar=("URL", "DEST", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        url, dest, size = args.child
        return _child(url, dest, int(size))
    size = (args.size_mb or (50 if args.quick else 200)) * MB
    runs = args.runs or (1 if args.quick else 5)
    curl = shutil.which("curl")
    print(f"== download: {size // MB} MB from the emulator's blob route, {runs} run(s) of each", flush=True)
    hook_runs: list[dict[str, float]] = []
    curl_runs: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="stableaudio-bench-download-") as tmp:
        work = Path(tmp)
        emulator, base_url = start_emulator(work, 1.0)
        try:
            url = f"{base_url}/_emulator/blob?size={size}"
            env = child_env(work / "airflow-home", base_url)
            # A first round, not counted, warms the page cache's memory (on a VM, the first
            # touch of guest memory is several times slower); then the order alternates.
            for round_no in range(runs + 1):
                hook_first = round_no % 2 == 0
                for client in ("hook", "curl") if hook_first else ("curl", "hook"):
                    if client == "hook":
                        result = run_hook(url, work / "hook.bin", size, env)
                        if round_no:
                            hook_runs.append(result)
                    elif curl:
                        result = run_curl(curl, url, work / "curl.bin", size)
                        if round_no:
                            curl_runs.append(result)
        finally:
            stop_process(emulator)
    hook_mbps = statistics.median(size / MB / r["seconds"] for r in hook_runs)
    growth_mb = max(r["rss_growth_kb"] for r in hook_runs) * 1024 / MB
    print(f"{'client':<28} {'MB/s (median)':>14} {'peak RSS':>24}")
    print(f"{'StableAudioHook.download_audio':<28} {hook_mbps:>14.0f} {f'+{growth_mb:.1f} MB (growth)':>24}")
    if curl_runs:
        curl_mbps = statistics.median(size / MB / r["seconds"] for r in curl_runs)
        curl_peak = max(r["peak_rss_kb"] for r in curl_runs) * 1024 / MB
        print(f"{'curl -o':<28} {curl_mbps:>14.0f} {f'{curl_peak:.1f} MB (whole process)':>24}")
    else:
        curl_mbps = float("nan")
        print("curl -o: not installed (apt-get install curl), no comparison")
    print()
    met = growth_mb <= RSS_TARGET_MB
    print(f"  [{'met ' if met else 'MISS'}] peak RSS growth <= {RSS_TARGET_MB:g} MB: +{growth_mb:.1f} MB")
    if curl_runs:
        ratio = hook_mbps / curl_mbps
        verdict = "met " if ratio >= THROUGHPUT_TARGET else "MISS"
        print(f"  [{verdict}] throughput >= {THROUGHPUT_TARGET:.0%} of curl's: {ratio:.0%}")
    else:
        print(f"  [n/a ] throughput >= {THROUGHPUT_TARGET:.0%} of curl's: curl missing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
