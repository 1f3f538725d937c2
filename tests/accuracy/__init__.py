"""Tests of the IEC 60601-2-24 accuracy package (analysis, balances, run, report, CLI)."""
