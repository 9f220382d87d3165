"""claims-engine: vectorized validation of Vietnamese health-insurance (BHYT) claims."""

__version__ = "0.1.0"
