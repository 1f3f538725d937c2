"""Application on the device: main loop (app), protocol server (server), state store (store)."""


def text(key, *args):
    """The application's text of `key` with `args` (pumpfw.fwtext, loaded for the call;
    pumpcore.render)."""
    from pumpcore import render, untold
    try:
        from pumpfw import fwtext
    except Exception:       # no heap or no flash for it now: the key and the values
        return untold(key, args)
    return render(fwtext, key, args)
