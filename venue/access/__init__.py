"""Access control: signed logons, address allow-lists, KYC-gated logons, lockouts."""
