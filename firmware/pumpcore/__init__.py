"""Pure core of the pump controller: dose math, program, scheduler, codecs. No hardware imports."""
