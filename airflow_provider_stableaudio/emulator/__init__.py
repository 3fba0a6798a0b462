"""Local emulator of Stable Audio's APIs: the AI/ML API's and Stability AI's (stdlib + aiohttp only)."""

from __future__ import annotations

from .audio import synthesize_wav
from .faults import FaultConfig
from .ratelimit import RateLimitConfig
from .server import EmulatorConfig, EmulatorServer, build_app
from .variants import VariantConfig

__all__ = [
    "EmulatorConfig",
    "EmulatorServer",
    "FaultConfig",
    "RateLimitConfig",
    "VariantConfig",
    "build_app",
    "synthesize_wav",
]
