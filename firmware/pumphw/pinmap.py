"""Load and check the one pin map (hw/pinmap.json, deployed as /pinmap.json) on both interpreters.

Every GPIO the firmware touches comes from this file; no pin number is written anywhere else.
`load_pinmap(path)` returns a `PinMap` whose attributes are RP2040 GPIO numbers (GPn), or
raises `PinMapError` naming the key, the bad value and the limit. Keys starting with "_" are
comments; any other unknown key is refused as a probable typo.
"""
import json

PINMAP_PATH = "/pinmap.json"  # device root; deploy copies hw/pinmap.json there

GPIO_MAX = 29  # RP2040 has GP0..GP29 (GP23..25 and GP29 are board functions on a Pico)

# RP2040 UART function pins (datasheet 2.19.2 function select): uart id -> (TX pins, RX pins)
UART_TX_PINS = ((0, 12, 16, 28), (4, 8, 20, 24))
UART_RX_PINS = ((1, 13, 17, 29), (5, 9, 21, 25))
ADC_GPIO_FIRST = 26  # ADC channel n is GPIO 26 + n, channels 0..3
ADC_CHANNEL_MAX = 3

# plain GPIO keys: name -> meaning (for error messages and the wiring table)
SIMPLE_KEYS = (
    ("step", "STEP to the TMC2209 (PIO side-set)"),
    ("dir", "DIR to the TMC2209 (PIO out pin)"),
    ("en_n", "EN to the TMC2209, active low (high = motor released)"),
    ("diag", "DIAG from the TMC2209 (high = driver error; StallGuard is off)"),
    ("end_stop_n", "plunger end-stop switch to GND, active low"),
    ("bolus_button_n", "patient bolus button to GND, active low"),
    ("alarm_led", "alarm LED (high = on)"),
    ("buzzer", "buzzer (PWM)"),
    ("status_led", "status LED (on-board LED of the Pico)"),
)
UART_KEYS = ("id", "tx", "rx", "baud")
ADC_KEYS = ("gpio", "channel")
I2C_KEYS = ("id", "sda", "scl", "freq")
I2C_SDA_PINS = ((0, 4, 8, 12, 16, 20, 24, 28), (2, 6, 10, 14, 18, 22, 26))
I2C_SCL_PINS = ((1, 5, 9, 13, 17, 21, 25, 29), (3, 7, 11, 15, 19, 23, 27))
BAUD_MIN = 9600
BAUD_MAX = 500000



def _bus_section(name, d, keys, bus):
    """Check a bus entry of the pin map (an object with exactly `keys`, id 0 or 1); its id."""
    if not isinstance(d, dict):
        raise PinMapError(name, repr(d), "must be an object with keys " + ", ".join(keys))
    for k in d:
        if k not in keys:
            raise PinMapError(name + "." + k, repr(d[k]), "unknown key (known: %s)" % ", ".join(keys))
    for k in keys:
        if k not in d:
            raise PinMapError(name + "." + k, "missing", "required key")
    bid = d["id"]
    if not _is_int(bid) or bid not in (0, 1):
        raise PinMapError(name + ".id", repr(bid), "must be 0 or 1 (RP2040 %s0/%s1)" % (bus, bus))
    return bid


def _bus_pin(key, value, pins, bid, label):
    """A bus signal's GPIO, which must be one the RP2040 routes that signal of bus `bid` to."""
    gpio = _gpio(key, value)
    if gpio not in pins[bid]:
        raise PinMapError(key, gpio, (label % bid) + " is only on GPIO %s" % (pins[bid],))
    return gpio

class PinMapError(ValueError):
    """A pin-map key that is missing, unknown or out of range. str() names key, value, limit."""

    def __init__(self, key, value, reason):
        super().__init__("pinmap.%s = %s: %s" % (key, value, reason))
        self.key = key
        self.value = value
        self.reason = reason

    def __str__(self):
        return "pinmap.%s = %s: %s" % (self.key, self.value, self.reason)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _gpio(key, v):
    if not _is_int(v):
        raise PinMapError(key, repr(v), "must be an integer GPIO number 0..%d" % GPIO_MAX)
    if v < 0 or v > GPIO_MAX:
        raise PinMapError(key, v, "outside the RP2040 GPIO range 0..%d" % GPIO_MAX)
    return v


class PinMap:
    """Checked pin assignment. Attributes: step, dir, en_n, diag, end_stop_n, bolus_button_n,
    alarm_led, buzzer, status_led (GPIO numbers), uart_id, uart_tx, uart_rx, uart_baud
    (uart_id is -1 when the map has no driver_uart), adc_gpio, adc_channel."""

    def __init__(self, raw):
        if not isinstance(raw, dict):
            raise PinMapError("(top level)", type(raw).__name__, "must be a JSON object")
        known = [k for k, _ in SIMPLE_KEYS] + ["driver_uart", "pressure_adc", "screw_encoder"]
        for k in raw:
            if not isinstance(k, str) or (not k.startswith("_") and k not in known):
                raise PinMapError(k, repr(raw[k]), "unknown key (known: %s)" % ", ".join(known))
        used = {}
        for key, _ in SIMPLE_KEYS:
            if key not in raw:
                raise PinMapError(key, "missing", "required key")
            setattr(self, key, self._claim(used, key, _gpio(key, raw[key])))
        self._load_uart(raw, used)
        self._load_adc(raw, used)
        self._load_i2c(raw, used)

    def _load_i2c(self, raw, used):
        """Optional "screw_encoder": the AS5600 on I2C (id, sda, scl, freq); absent: i2c_id -1."""
        self.i2c_id = -1
        self.i2c_sda = -1
        self.i2c_scl = -1
        self.i2c_freq = 0
        e = raw.get("screw_encoder")
        if e is None:
            return
        iid = _bus_section("screw_encoder", e, I2C_KEYS, "I2C")
        sda = _bus_pin("screw_encoder.sda", e["sda"], I2C_SDA_PINS, iid, "I2C%d SDA")
        scl = _bus_pin("screw_encoder.scl", e["scl"], I2C_SCL_PINS, iid, "I2C%d SCL")
        freq = e["freq"]
        if not _is_int(freq) or freq < 10000 or freq > 1000000:
            raise PinMapError("screw_encoder.freq", repr(freq), "must be an integer 10000..1000000 (AS5600: up to 1 MHz)")
        self.i2c_id = iid
        self.i2c_sda = self._claim(used, "screw_encoder.sda", sda)
        self.i2c_scl = self._claim(used, "screw_encoder.scl", scl)
        self.i2c_freq = freq

    @staticmethod
    def _claim(used, key, gpio):
        if gpio in used:
            raise PinMapError(key, gpio, "GPIO %d is already used by %s" % (gpio, used[gpio]))
        used[gpio] = key
        return gpio

    def _load_uart(self, raw, used):
        self.uart_id = -1
        self.uart_tx = -1
        self.uart_rx = -1
        self.uart_baud = 0
        if raw.get("driver_uart") is None:
            return  # absent or null: driver configured by its MS1/MS2 pins instead of UART
        u = raw["driver_uart"]
        uid = _bus_section("driver_uart", u, UART_KEYS, "UART")
        tx = _bus_pin("driver_uart.tx", u["tx"], UART_TX_PINS, uid, "UART%d TX")
        rx = _bus_pin("driver_uart.rx", u["rx"], UART_RX_PINS, uid, "UART%d RX")
        baud = u["baud"]
        if not _is_int(baud) or baud < BAUD_MIN or baud > BAUD_MAX:
            raise PinMapError("driver_uart.baud", repr(baud), "must be an integer %d..%d" % (BAUD_MIN, BAUD_MAX))
        self.uart_id = uid
        self.uart_tx = self._claim(used, "driver_uart.tx", tx)
        self.uart_rx = self._claim(used, "driver_uart.rx", rx)
        self.uart_baud = baud

    def _load_adc(self, raw, used):
        if "pressure_adc" not in raw:
            raise PinMapError("pressure_adc", "missing", "required key")
        a = raw["pressure_adc"]
        if not isinstance(a, dict):
            raise PinMapError("pressure_adc", repr(a), "must be an object with keys gpio, channel")
        for k in a:
            if k not in ADC_KEYS:
                raise PinMapError("pressure_adc." + k, repr(a[k]), "unknown key (known: gpio, channel)")
        for k in ADC_KEYS:
            if k not in a:
                raise PinMapError("pressure_adc." + k, "missing", "required key")
        gpio = _gpio("pressure_adc.gpio", a["gpio"])
        if gpio < ADC_GPIO_FIRST:
            raise PinMapError("pressure_adc.gpio", gpio, "ADC inputs are GPIO %d..%d" % (ADC_GPIO_FIRST, GPIO_MAX))
        ch = a["channel"]
        if not _is_int(ch) or ch != gpio - ADC_GPIO_FIRST:
            raise PinMapError("pressure_adc.channel", repr(ch),
                              "GPIO %d is ADC channel %d" % (gpio, gpio - ADC_GPIO_FIRST))
        self.adc_gpio = self._claim(used, "pressure_adc.gpio", gpio)
        self.adc_channel = ch

    def rows(self):
        """(signal, GPIO, meaning) for every assigned pin, in map order (wiring table)."""
        out = []
        for key, meaning in SIMPLE_KEYS:
            out.append((key, getattr(self, key), meaning))
        if self.uart_id >= 0:
            out.append(("driver_uart.tx", self.uart_tx,
                        "UART%d TX to the TMC2209 PDN_UART (via 1 kOhm), %d baud" % (self.uart_id, self.uart_baud)))
            out.append(("driver_uart.rx", self.uart_rx,
                        "UART%d RX from the TMC2209 PDN_UART (direct)" % self.uart_id))
        out.append(("pressure_adc", self.adc_gpio, "pressure sensor output, ADC channel %d" % self.adc_channel))
        if self.i2c_id >= 0:
            out.append(("screw_encoder.sda", self.i2c_sda, "I2C%d SDA to the AS5600 screw encoder (0x36), 4.7 kOhm to 3V3" % self.i2c_id))
            out.append(("screw_encoder.scl", self.i2c_scl, "I2C%d SCL to the AS5600 screw encoder, %d Hz, 4.7 kOhm to 3V3" % (self.i2c_id, self.i2c_freq)))
        return out


def parse_pinmap(text):
    """PinMap from JSON text; PinMapError if the text is not JSON or a key is wrong."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        raise PinMapError("(file)", "not JSON", str(e))
    return PinMap(raw)


def load_pinmap(path=PINMAP_PATH):
    """PinMap from the file at `path` (default: /pinmap.json on the device root)."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise PinMapError("(file)", path, "cannot be read (%s); deploy copies hw/pinmap.json there" % e)
    return parse_pinmap(text)
