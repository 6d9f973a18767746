"""The matching core: commands in, numbered events out; no I/O, no clock reads, integers inside."""
