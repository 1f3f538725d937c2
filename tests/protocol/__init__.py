"""Tests of the wire protocol, firmware protocol server, host Pump API, transport and key store."""
