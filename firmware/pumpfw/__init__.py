"""Application on the device: main loop (app), protocol server (server), state store (store)."""
