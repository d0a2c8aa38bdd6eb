"""The deterministic portfolio-margin engine. PURE: no I/O, clock, randomness, environment or logging."""
