"""Loaded by the real-stack tier's triggerers only (their PYTHONPATH): asyncio's debug mode names the
task of any callback that holds the event loop for more than 50 ms (its default is 100 ms).

The triggerer's own watchdog says that the loop was blocked, never by what; this says by which task,
and a trigger's task is named after its task instance ("dag/run/task/map/try (ID n)").
"""

import asyncio.base_events
import os

if os.environ.get("PYTHONASYNCIODEBUG"):
    asyncio.base_events.BaseEventLoop.slow_callback_duration = 0.05
