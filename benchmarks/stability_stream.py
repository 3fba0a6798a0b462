"""Stability streaming benchmark: the memory of the three Stability AI paths beside the clip's size.

The emulator runs in its own process on loopback; each path runs in a fresh subprocess, warmed up with
a small call of the same kind (imports, connection lookup, HTTP session), and then measured:

1. ``generate_to``: Stable Audio 2.5 audio-to-audio, a long WAV ``init_audio`` streamed into the
   multipart request and the long answer streamed to a file;
2. ``aget_generation`` in an asyncio loop (the trigger's poll) of a finished Stable Audio 3 result,
   whose body it must leave unread; the emulator's ledger says how many bytes it sent before the close;
3. ``store_result`` (the worker's fetch) of that result, streamed to a file.

Memory of the measured call, two ways: the peak of Python allocations it made (``tracemalloc``), and
the growth of the process's peak RSS (``VmHWM``, reset just before the call; it includes tracemalloc's
own small overhead and everything outside Python's allocator).

Usage::

    python benchmarks/stability_stream.py                # 180 s input, 190 s answer, 380 s result
    python benchmarks/stability_stream.py --quick        # 30 s input, 30 s answer, 60 s result
    python benchmarks/stability_stream.py --json FILE    # also write the figures as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
import tracemalloc
from dataclasses import replace
from pathlib import Path
from typing import Any

from trigger_fanout import (  # run as a script, from benchmarks/ (as `make bench` does)
    API_KEY,
    ROOT,
    _http,
    child_env,
    die_with_parent,
    peak_rss_kb,
    reset_peak_rss,
    start_emulator,
    stop_process,
)

MB = 1_000_000  # decimal megabytes throughout
FULL = {"input": 180, "answer": 190, "result": 380}  # seconds of 44.1 kHz stereo 16-bit WAV
QUICK = {"input": 30, "answer": 30, "result": 60}
WARM_SECONDS = 6  # the shortest input Stability takes
CHILD_TIMEOUT = 300.0


class Probe:
    """Measures one call: tracemalloc's peak of what it allocated, and the growth of peak RSS."""

    def start(self) -> None:
        self.peak_reset = reset_peak_rss()
        self.rss_before = peak_rss_kb()
        tracemalloc.start()

    def stop(self, **extra: Any) -> dict[str, Any]:
        _, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        growth = (peak_rss_kb() - self.rss_before) * 1024
        return {"traced_peak": traced_peak, "rss_growth": growth, "peak_reset": self.peak_reset, **extra}


def _child(path: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run one path in this fresh process: warm up, then measure; return the figures."""
    from airflow_provider_stableaudio.generation_request import GenerationRequest
    from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook

    hook, work, probe = StabilityAudioHook(), Path(config["work"]), Probe()
    if path == "submit":  # not measured: two Stable Audio 3 generations for the other two paths
        ids = {}
        for name in ("small", "big"):
            seconds = WARM_SECONDS if name == "small" else config["result"]
            built = GenerationRequest.build(
                "stable-audio-3", prompt=f"bench {name}", duration=seconds, output_format="wav"
            )
            ids[name] = hook.submit_generation(built).id
        return ids
    if path == "generate":

        def a2a(prompt: str, init_audio: str, seconds: int) -> GenerationRequest:
            return GenerationRequest.build(
                "stable-audio-2.5",
                prompt=prompt,
                init_audio=init_audio,
                strength=0.5,
                duration=seconds,
                output_format="wav",
            )

        hook.generate_to(a2a("warm-up", config["warm_input"], WARM_SECONDS), work / "warm.wav", timeout=120)
        probe.start()
        built = a2a("bench remix", config["input"], config["answer"])
        _, location = hook.generate_to(built, work / "answer.wav", timeout=CHILD_TIMEOUT)
        return probe.stop(stored=Path(location).stat().st_size)
    if path == "poll":

        async def poll() -> dict[str, Any]:
            await hook.aget_generation(config["ids"]["small"])  # warm-up: a finished result too
            probe.start()
            generation = await hook.aget_generation(config["ids"]["big"])
            audio = generation.audio_file
            return probe.stop(state=generation.state.name, announced=audio and audio.file_size)

        return asyncio.run(poll())
    # path == "fetch": what the worker gets from the trigger's event is the id
    warm = hook.get_generation(config["ids"]["small"])
    hook.store_result(warm, work / "warm.wav")
    probe.start()
    location = hook.store_result(replace(warm, id=config["ids"]["big"]), work / "result.wav")
    return probe.stop(stored=Path(location).stat().st_size)


def run_child(path: str, config: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", path, json.dumps(config)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=CHILD_TIMEOUT,
        preexec_fn=die_with_parent,
    )
    if out.returncode != 0:
        raise RuntimeError(f"the {path} path failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def generations(base_url: str) -> dict[str, dict[str, Any]]:
    return {g["id"]: g for g in _http("GET", f"{base_url}/_emulator/ledger")["stability"]["generations"]}


def wait_rendered(base_url: str, ids: list[str], timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while True:
        ledger = generations(base_url)
        if all(ledger[i]["status"] == "complete" and ledger[i]["file_size"] for i in ids):
            return
        if time.monotonic() > end:
            raise TimeoutError(f"the emulator did not finish the results within {timeout:.0f} s")
        time.sleep(0.2)


def run_benchmark(sizes: dict[str, int]) -> list[dict[str, Any]]:
    from airflow_provider_stableaudio.emulator.audio import synthesize_wav

    with tempfile.TemporaryDirectory(prefix="stableaudio-bench-stability-") as tmp:
        work = Path(tmp)
        config: dict[str, Any] = {**sizes, "work": tmp}
        for name, seconds in (("input", sizes["input"]), ("warm_input", WARM_SECONDS)):
            config[name] = str(work / f"{name}.wav")
            config[f"{name}_size"] = Path(config[name]).write_bytes(synthesize_wav(f"bench {name}", seconds))
        emulator, base_url = start_emulator(work, 1.0)
        try:
            env = {**child_env(work / "airflow-home", base_url), "PYTHONPATH": str(ROOT)}  # this tree's code
            env["AIRFLOW_CONN_STABILITY_DEFAULT"] = json.dumps(
                {"conn_type": "stability", "host": base_url, "password": API_KEY, "extra": {"timeout": 120}}
            )
            generate = run_child("generate", config, env)
            config["ids"] = run_child("submit", config, env)
            big = config["ids"]["big"]
            wait_rendered(base_url, list(config["ids"].values()))
            poll = run_child("poll", config, env)
            poll["sent"] = generations(base_url)[big]["bytes_served"]
            fetch = run_child("fetch", config, env)
            ledger = generations(base_url)
        finally:
            stop_process(emulator)
    (answer,) = [g for g in ledger.values() if g["prompt"] == "bench remix"]
    result = ledger[big]
    rows = [
        {"path": "generate_to (2.5 audio-to-audio)", "clip": answer["file_size"], **generate},
        {"path": "aget_generation (finished result)", "clip": result["file_size"], **poll},
        {"path": "store_result", "clip": result["file_size"], **fetch},
    ]
    problems = rows[0]["problems"] = []
    if not answer["derived_from_input"] or answer["input_size"] != config["input_size"]:
        problems.append("the emulator did not receive the whole input audio")
    if generate["stored"] != answer["file_size"]:
        problems.append(f"stored {generate['stored']} of {answer['file_size']} bytes")
    rows[1]["problems"] = [] if poll["state"] == "SUCCEEDED" else [f"the poll read {poll['state']}"]
    fetched = result["bytes_served"] - poll["sent"]
    rows[2]["problems"] = [] if fetch["stored"] == result["file_size"] == fetched else ["incomplete fetch"]
    rows[0]["input"] = answer["input_size"]
    return rows


def render(rows: list[dict[str, Any]], sizes: dict[str, int]) -> str:
    def mb(n: float) -> str:
        return f"{n / MB:.1f}"

    lines = [
        f"{'path':<36} {'clip MB':>8} {'traced peak MB':>15} {'peak RSS growth MB':>19} {'peak/clip':>10}",
    ]
    for row in rows:
        worst = max(row["traced_peak"], row["rss_growth"])
        lines.append(
            f"{row['path']:<36} {mb(row['clip']):>8} {mb(row['traced_peak']):>15}"
            f" {mb(row['rss_growth']):>19} {worst / row['clip']:>10.1%}"
        )
    generate, poll, _ = rows
    lines += [
        "",
        f"generate_to also streamed the {sizes['input']} s input ({mb(generate['input'])} MB) upstream.",
        f"the poll left the body unread: the emulator sent {poll['sent']:,} of {poll['clip']:,} bytes"
        f" ({poll['sent'] / poll['clip']:.1%}) before the connection closed (an upper bound on what"
        " reached the poller).",
        "peak/clip: the larger of the two peaks over the clip's size.",
    ]
    for row in rows:
        lines += [f"  PROBLEM ({row['path']}): {p}" for p in row["problems"]]
    if not all(row["peak_reset"] for row in rows):
        lines.append("  note: the peak RSS was not reset (no /proc/self/clear_refs): growth is overstated")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help=f"small sizes (seconds): {QUICK}")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "CONFIG"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child[0], json.loads(args.child[1]))))
        return 0
    sizes = QUICK if args.quick else FULL
    print(
        f"== Stability streaming: {sizes['input']} s WAV input, {sizes['answer']} s answer, "
        f"{sizes['result']} s result (44.1 kHz stereo 16-bit)",
        flush=True,
    )
    rows = run_benchmark(sizes)
    print(render(rows, sizes))
    if args.json:
        Path(args.json).write_text(json.dumps({"sizes": sizes, "rows": rows}, indent=2))
    return 1 if any(row["problems"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
