"""FieldError: the one shape of a caller's mistake in the core: the field, the value and why."""


class FieldError(ValueError):
    """str(err) reads "<field> = <value>: <reason>", e.g.
    "flex.patterns[0].steps[3].rate_ng_day = 2500000: above the hard limit max_rate_ng_day 1500000".
    Subclasses name the domain (ProgramError, QuantityError, ...)."""

    def __init__(self, field, value, reason):
        super().__init__("%s = %s: %s" % (field, value, reason))
        self.field = field
        self.value = value
        self.reason = reason

    def __str__(self):
        return "%s = %s: %s" % (self.field, self.value, self.reason)
