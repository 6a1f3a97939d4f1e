"""Size limits of the wire format.

They are Segment's published limits, so an app that already respects Segment's never trips ours,
and they live here, in the contract, so the SDK can refuse an oversize event at capture time
instead of having the collector bounce it minutes later. The collector may be configured
lower or higher; these are the defaults both sides agree on.
"""

from datetime import UTC, datetime
from typing import Final

MAX_EVENT_BYTES: Final = 32 * 1024
"""Largest single event, as encoded JSON."""

MAX_BATCH_BYTES: Final = 500 * 1024
"""Largest batch request body, after decompression."""

MAX_BATCH_EVENTS: Final = 2_500
"""Most events in one batch request."""

MAX_NESTING_DEPTH: Final = 32
"""Deepest nesting of objects and arrays inside `properties`, `traits` and `context`.

Deeper documents are almost always a serialisation bug (a cyclic object flattened) and would
make every downstream JSON function slower; rejecting them early keeps the store clean.
"""

MAX_ID_CHARS: Final = 256
"""Longest `messageId`, `userId`, `anonymousId`, `groupId` or `previousId`."""

MAX_NAME_CHARS: Final = 256
"""Longest event, page or screen name."""

FEEDBACK_SCORE_MIN: Final = 1
FEEDBACK_SCORE_MAX: Final = 10

EARLIEST_TIME: Final = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_TIME: Final = datetime(2299, 12, 31, tzinfo=UTC)
"""The range of ClickHouse's ``DateTime64``, which stores every time: an event dated
before it is refused (stored, it read back as year 0, and every query selecting it
failed), and a map window outside it could not be read."""
