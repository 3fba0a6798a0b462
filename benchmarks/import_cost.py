"""Import cost: what importing the operator module adds over ``airflow.sdk``, in fresh interpreters.

A DAG file that uses the provider imports ``airflow_provider_stableaudio.operators.stable_audio``; one
that does not imports ``airflow.sdk`` anyway. The difference of the two import times (median over
several fresh interpreters each, run alternately) is what the provider costs every DAG file parse.
As a cross-check with less noise, each ``airflow.sdk`` run then also times importing the operator
module in the same interpreter. Bytecode is cached in a private folder, as in any deployment.
Also lists the third-party top-level packages the operator module loads that ``airflow.sdk`` does
not (an HTTP client there would be a cost every parse pays for nothing), and the slowest added
modules according to ``python -X importtime``.

Usage::

    python benchmarks/import_cost.py            # 21 runs of each
    python benchmarks/import_cost.py --quick    # 9 runs of each
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE = "airflow_provider_stableaudio.operators.stable_audio"
BASE = "airflow.sdk"
TARGET_MS = 30.0
HTTP_CLIENTS = {"requests", "aiohttp", "httpx", "httpcore", "urllib3", "yarl", "multidict", "h11", "anyio"}
_PROBE = (
    "import json, sys, time\n"
    "t = time.perf_counter()\n"
    "import {module}\n"
    "d = time.perf_counter() - t\n"
    "m = sorted(sys.modules)\n"
    "t = time.perf_counter()\n"
    "import {then}\n"
    "print(json.dumps({{'seconds': d, 'modules': m, 'then': time.perf_counter() - t}}))\n"
)


def _env(work: str) -> dict[str, str]:
    # Bytecode is cached (in a private folder) as in any deployment; the first run fills the cache.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.update(
        AIRFLOW_HOME=os.path.join(work, "airflow-home"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONPYCACHEPREFIX=os.path.join(work, "pycache"),
    )
    return env


def import_once(module: str, env: dict[str, str], then: str = "sys") -> tuple[float, set[str], float]:
    """Import ``module`` in a fresh interpreter, then ``then``.

    Returns the seconds the first import took, ``sys.modules`` after it, and the seconds ``then`` took.
    """
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(module=module, then=then)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    data = json.loads(out.stdout.strip().splitlines()[-1])
    return data["seconds"], set(data["modules"]), data["then"]


def slowest_added(env: dict[str, str], count: int = 8) -> list[tuple[str, int]]:
    """The modules imported by the operator module after ``airflow.sdk``, by self time (us)."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {BASE}; import {MODULE}"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    rows: list[tuple[str, int]] = []
    after_base = False
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, raw_name = line[len("import time:") :].split("|", 2)
        name = raw_name.strip()
        if after_base:
            rows.append((name, int(self_us)))
        elif name == BASE and raw_name.startswith(" ") and not raw_name.startswith("  "):
            after_base = True  # top-level line: what completes after it is the operator's import
    return sorted(rows, key=lambda row: -row[1])[:count]


def top_level_third_party(modules: set[str]) -> list[str]:
    stdlib = set(sys.stdlib_module_names) | {"__main__", "_distutils_hack"}
    tops = {name.split(".")[0] for name in modules}
    return sorted(
        t for t in tops if t not in stdlib and t != "airflow_provider_stableaudio" and t != "airflow"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, help="fresh interpreters per module (default 21; 9 with --quick)")
    parser.add_argument("--quick", action="store_true", help="9 runs of each")
    args = parser.parse_args(argv)
    runs = args.runs or (9 if args.quick else 21)
    with tempfile.TemporaryDirectory(prefix="stableaudio-bench-import-") as work:
        env = _env(work)
        import_once(MODULE, env)  # fills the bytecode cache, warms the file cache; not counted
        base_times, module_times, marginal_times = [], [], []
        base_modules: set[str] = set()
        module_modules: set[str] = set()
        for _ in range(runs):  # alternate, so drift affects both alike
            seconds, base_modules, marginal = import_once(BASE, env, then=MODULE)
            base_times.append(seconds)
            marginal_times.append(marginal)
            seconds, module_modules, _ = import_once(MODULE, env)
            module_times.append(seconds)
        slowest = slowest_added(env)
    base_ms, module_ms = statistics.median(base_times) * 1000, statistics.median(module_times) * 1000
    cost = module_ms - base_ms
    added = module_modules - base_modules
    third_party = top_level_third_party(added)
    airflow_added = sorted(m for m in added if m == "airflow" or m.startswith("airflow."))
    own = sorted(m for m in added if m.startswith("airflow_provider_stableaudio"))
    clients = sorted(set(third_party) & HTTP_CLIENTS)
    width = len(f"import {MODULE}")
    print(
        f"== import cost: median of {runs} fresh interpreters each"
        + ("  (--quick: indicative; the difference is noisy at +-20 ms)" if args.quick else "")
    )
    print(f"{'import ' + BASE:<{width}}  {base_ms:8.1f} ms")
    print(f"{'import ' + MODULE:<{width}}  {module_ms:8.1f} ms")
    verdict = "met " if cost <= TARGET_MS else "MISS"
    label = "the operator module over airflow.sdk"
    print(f"{label:<{width}}  {cost:8.1f} ms   [{verdict}] target <= {TARGET_MS:g} ms")
    spread = (max(module_times) - min(module_times)) * 1000
    print(f"  (spread of single fresh-interpreter runs: {spread:.0f} ms, hence medians)")
    marginal_ms = statistics.median(marginal_times) * 1000
    print(f"{'cross-check: the operator module right after airflow.sdk':<{width}}  {marginal_ms:8.1f} ms")
    print(f"third-party top-level packages it adds over airflow.sdk: {', '.join(third_party) or 'none'}")
    print(f"  HTTP clients among them: {', '.join(clients) or 'none'}")
    print(f"provider modules it loads: {len(own)}; Airflow modules it adds: {len(airflow_added)}")
    for name in airflow_added:
        print(f"  {name}")
    print("slowest modules it adds (python -X importtime, self time):")
    for name, self_us in slowest:
        print(f"  {self_us / 1000:7.2f} ms  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
