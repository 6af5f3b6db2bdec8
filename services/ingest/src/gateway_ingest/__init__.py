"""ingest: owns the serial port, writes every CRC-checked ALP_DATA frame to `{p}:frames`."""
