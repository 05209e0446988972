"""Schemathesis hooks for the Cruddur API (loaded through SCHEMATHESIS_HOOKS).

The browser relay takes OTLP protobuf: its schema is binary, so its bodies
are sent as the raw bytes schemathesis generates for binary data.
"""

import schemathesis

schemathesis.serializer.alias("application/x-protobuf", "application/octet-stream")
