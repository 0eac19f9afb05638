"""Measured time and energy on the client: one meter interface over Jetson rails, RAPL and a CPU-time model.

Every reading carries a method tag saying how it was obtained (``measured:jetson-rails``, ``measured:rapl``,
``estimated:cpu-model``); :func:`~relief_client.telemetry.select.best_meter` picks the best source present.
"""

from relief_client.telemetry.meter import EnergyReading, Meter
from relief_client.telemetry.phases import PhaseTimer, RoundTelemetry
from relief_client.telemetry.select import best_meter

__all__ = ["EnergyReading", "Meter", "PhaseTimer", "RoundTelemetry", "best_meter"]
