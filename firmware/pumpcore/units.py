"""Base units of the dose path. Integers only: dose ng, rate ng/day, concentration ug/mL
(= ng/uL), volume nL, time ms, time of day ms since midnight.

Their clinician-style text ("186 ug/day") is pumpcore.unittext, which the device loads only
for its review screen (`program.describe()`); parsing the way clinicians write them ("50 ug",
"186 ug/day", "07:30") is the host's job and lives in `pumpctl.quantity`, which the device
never carries.
"""
from pumpcore.fixed import const

MS_PER_DAY = const(86400000)
MS_PER_HOUR = const(3600000)
# One dose quantum is 1 ng/day sustained for 1 ms = 1/86_400_000 ng.
QUANTA_PER_NG = const(86400000)
