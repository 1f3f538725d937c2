"""The emulated Pico, by job: `rig` (the host's handle), `supervisor` (the process that
runs the image), `wiring`, `usb`, `physics`, `image`, `rigdir`."""
