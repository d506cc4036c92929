"""Decoding settings shared by the ``hf``, ``vllm`` and ``openai`` adapters: greedy by default, sampled on request.

The paper's models are evaluated greedily; other models are commonly evaluated with sampling
(Qwen3-VL at temperature 0.7), and then one run says little: ``evaluate --repeats N --seed S``
runs N sampled passes, repeat ``i`` seeded with ``S + i`` (:meth:`regiondial_bench.adapters.Adapter.reseed`).
Each backend turns one :class:`SamplingSettings` into its own parameters, so the three accept the
same options (``temperature``, ``top_p``, ``seed``) with the same checks.

>>> SamplingSettings.of(temperature=0.7, seed=3).describe()
{'temperature': 0.7, 'top_p': 1.0, 'seed': 3}
>>> SamplingSettings.of().greedy, SamplingSettings.of(temperature=0.7).reseeded(5).seed
(True, 5)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .base import AdapterError


@dataclass(frozen=True)
class SamplingSettings:
    """How answers are decoded.

    Attributes:
        temperature: 0 decodes greedily (the default); above 0 samples at this temperature.
        top_p: Nucleus sampling's probability mass (1.0: the whole distribution).
        seed: The seed sampled answers are drawn from (None: the backend's own).
    """

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None

    @classmethod
    def of(cls, temperature: Any = 0.0, top_p: Any = 1.0, seed: Any = None) -> SamplingSettings:
        """Validated settings from adapter options (an :class:`AdapterError` names the bad one)."""
        for name, value in (("temperature", temperature), ("top_p", top_p)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise AdapterError(f"{name} must be a finite number, got {value!r}")
        if not 0.0 <= temperature <= 100.0:
            raise AdapterError(f"temperature must be in [0, 100] (0: greedy), got {temperature}")
        if not 0.0 < top_p <= 1.0:
            raise AdapterError(f"top_p must be in (0, 1], got {top_p}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
            raise AdapterError(f"seed must be a non-negative integer, got {seed!r}")
        return cls(float(temperature), float(top_p), seed)

    @property
    def greedy(self) -> bool:
        """Whether decoding is greedy (the same request always gets the same answer)."""
        return self.temperature == 0.0

    def reseeded(self, seed: int) -> SamplingSettings:
        """The same settings drawing from ``seed``."""
        return dataclasses.replace(self, seed=SamplingSettings.of(seed=seed).seed)

    def describe(self) -> dict[str, Any]:
        """The settings as recorded in a run's provenance and the response cache's key."""
        return dataclasses.asdict(self)
