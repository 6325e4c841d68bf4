import pytest

from ixpect.humantime import parse


@pytest.mark.parametrize("text, seconds", [
    ("15s", 15.0),
    ("1min", 60.0),
    ("1m", 60.0),
    ("1hour 12min 5s", 4325.0),
    ("1h12m5s", 4325.0),            # parts need no separator
    ("  2 hours  ", 7200.0),        # nor between number and unit
    ("100ms", 0.1),
    ("250us", 0.00025),
    ("7ns", 7e-9),
    ("1nsec 1usec 1msec", 0.001001001),
    ("2h", 7200.0),
    ("1hr", 3600.0),
    ("1d", 86400.0),
    ("3days", 259200.0),
    ("1week", 604800.0),
    ("2w", 1209600.0),
    ("1M", 2630016.0),              # humantime's month: 30.44 days
    ("1month", 2630016.0),
    ("1y", 31557600.0),             # and year: 365.25 days
    ("2years", 63115200.0),
    ("1second 2seconds 1sec", 4.0),
    ("0s", 0.0),
])
def test_parse(text, seconds):
    assert parse(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("text, message", [
    ("", "empty duration"),
    ("   ", "empty duration"),
    ("15", "time unit needed after 15"),
    ("1.5h", "fractions are not supported"),
    ("5 parsecs", "unknown time unit 'parsecs'"),
    ("1MIN", "unknown time unit 'MIN'"),  # units are case-sensitive, as in humantime
    ("min", "expected a number at 'min'"),
    ("-5s", "expected a number at '-5s'"),
    ("5s later", "expected a number at 'later'"),
    ("5s !", "expected a number at '!'"),
    (15, "expected a duration string"),
])
def test_parse_rejects(text, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        parse(text)
