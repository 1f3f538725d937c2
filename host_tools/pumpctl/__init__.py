"""Host tools for the bench-rig intrathecal pump: Python API (`Pump`), CLI (`pumpctl`), rigs."""
__version__ = "0.1.0"
