"""The pure core: no I/O, no clock, no logging. Functions of values, returning values."""
