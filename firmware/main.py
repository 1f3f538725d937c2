"""Boot entry of the pump firmware: build the hardware layer, then run the application.

The same file boots a real Pico (pumphw.rp2hw) and the virtual rig (pumphw.simhw): the
hardware layer is chosen by platform in pumphw.make_hardware().
"""
import pumphw
from pumpfw import app

app.run(pumphw.make_hardware())
